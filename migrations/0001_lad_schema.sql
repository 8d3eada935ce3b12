-- =============================================================================
-- LAD database schema, migration 0001 (PostgreSQL 15, applied by sqlx migrate)
--
-- Source: seeds/000_3650eedd7b2e3b8a.txt, "LAD Database Schema - Quick
-- Reference Index". The seed's header says 50 tables but it names 49; all 49
-- are created here, grouped in the seed's module order:
--   1. Core infrastructure (9)     6. Education vertical (2)
--   2. Leads & pipeline (7)        7. Credits, legacy (2)
--   3. Campaigns (4)               8. Billing (6)
--   4. Communication (4)           9. AI ICP assistant (4)
--   5. Enrichment (2)             10. Voice agent system (9)
--
-- Conventions
--   * id uuid PRIMARY KEY DEFAULT gen_random_uuid() (built into PG13+).
--   * tenant_id uuid NOT NULL on every tenant-owned table. Global tables:
--     users, user_identities, billing_pricing_catalog, ai_keyword_expansions.
--     feature_flags has nullable tenant_id/user_id (global/tenant/user scope).
--   * created_at / updated_at / deleted_at (soft delete) everywhere, except
--     the append-only tables domain_events and billing_ledger_transactions
--     (created_at only; UPDATE/DELETE raise an exception).
--   * updated_at is maintained by lad_set_updated_at() (attached at the end).
--   * Money is numeric, never float. Status enumerations are CHECKs on text.
--   * Tenant-owned rows cascade from tenants; child rows cascade from their
--     parent; created_by_user_id and similar "who" columns are SET NULL.
--   * Tables fed by the event hub from Kafka have NO foreign keys to
--     tenants/users/leads/campaigns/agents (see comment above each one).
--   * Every foreign-key column, and tenant_id, is the leading column of an
--     index.
-- =============================================================================


-- -----------------------------------------------------------------------------
-- Shared trigger functions
-- -----------------------------------------------------------------------------

-- BEFORE UPDATE: stamp updated_at. Attached to every table that has updated_at
-- by the DO block at the end of this file.
CREATE FUNCTION lad_set_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END;
$$;

-- BEFORE UPDATE OR DELETE: append-only tables. The message reads
-- "<table> is append-only". TRUNCATE is deliberately not blocked (it needs
-- table ownership and is an administrative/archival operation).
CREATE FUNCTION lad_forbid_mutation() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only', TG_TABLE_NAME
        USING HINT = 'Record a compensating row instead of changing or removing history.';
END;
$$;

-- campaigns carries both deleted_at and the legacy is_deleted flag (the seed's
-- partial index uses is_deleted). Keep them in agreement whichever one the
-- application writes.
CREATE FUNCTION lad_sync_is_deleted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        -- restore through either column
        IF OLD.deleted_at IS NOT NULL AND NEW.deleted_at IS NULL THEN
            NEW.is_deleted := false;
        ELSIF OLD.is_deleted AND NOT NEW.is_deleted THEN
            NEW.deleted_at := NULL;
        END IF;
    END IF;
    IF NEW.deleted_at IS NOT NULL THEN
        NEW.is_deleted := true;
    ELSIF NEW.is_deleted THEN
        NEW.deleted_at := now();
    END IF;
    RETURN NEW;
END;
$$;


-- =============================================================================
-- 1. CORE INFRASTRUCTURE (9)
-- =============================================================================

CREATE TABLE tenants (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name            text NOT NULL CHECK (btrim(name) <> ''),
    slug            text NOT NULL CONSTRAINT tenants_slug_key UNIQUE
                        CHECK (slug ~ '^[a-z0-9]+(-[a-z0-9]+)*$'),
    status          text NOT NULL DEFAULT 'active'
                        CHECK (status IN ('active', 'trial', 'suspended', 'canceled')),
    plan_tier       text NOT NULL DEFAULT 'free'
                        CHECK (plan_tier IN ('free', 'starter', 'professional', 'enterprise')),
    billing_email   text,
    timezone        text NOT NULL DEFAULT 'UTC',
    locale          text NOT NULL DEFAULT 'en',
    trial_ends_at   timestamptz,
    settings        jsonb NOT NULL DEFAULT '{}',
    metadata        jsonb NOT NULL DEFAULT '{}',
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    deleted_at      timestamptz
);
CREATE INDEX tenants_status_active_idx ON tenants (status) WHERE status = 'active';

-- Users are global: one login, many tenants through memberships.
CREATE TABLE users (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    email               text NOT NULL CHECK (email ~ '^[^@[:space:]]+@[^@[:space:]]+$'),
    password_hash       text,            -- bcrypt; NULL for SSO-only accounts
    first_name          text,
    last_name           text,
    display_name        text,
    avatar_url          text,
    phone               text,
    primary_tenant_id   uuid REFERENCES tenants (id) ON DELETE SET NULL,
    is_active           boolean NOT NULL DEFAULT true,
    is_platform_admin   boolean NOT NULL DEFAULT false,
    email_verified_at   timestamptz,
    last_login_at       timestamptz,
    timezone            text,
    locale              text,
    metadata            jsonb NOT NULL DEFAULT '{}',
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    deleted_at          timestamptz
);
CREATE UNIQUE INDEX users_email_lower_key ON users (lower(email));
CREATE INDEX users_is_active_idx ON users (is_active) WHERE is_active = true;
CREATE INDEX users_primary_tenant_id_idx ON users (primary_tenant_id);

CREATE TABLE user_identities (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id             uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    provider            text NOT NULL CHECK (provider ~ '^[a-z0-9_.-]+$'),  -- google, microsoft, linkedin, saml, ...
    provider_user_id    text NOT NULL,
    provider_email      text,
    access_token        text,            -- stored plain per seed; encrypt in production
    refresh_token       text,
    token_expires_at    timestamptz,
    profile_data        jsonb NOT NULL DEFAULT '{}',
    last_used_at        timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    deleted_at          timestamptz,
    CONSTRAINT user_identities_provider_user_key UNIQUE (provider, provider_user_id)
);
CREATE INDEX user_identities_user_id_idx ON user_identities (user_id);

CREATE TABLE memberships (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id             uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    tenant_id           uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    role                text NOT NULL DEFAULT 'member'
                            CHECK (role IN ('owner', 'admin', 'member', 'viewer')),
    invited_by_user_id  uuid REFERENCES users (id) ON DELETE SET NULL,
    joined_at           timestamptz NOT NULL DEFAULT now(),
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    deleted_at          timestamptz,
    CONSTRAINT memberships_user_tenant_key UNIQUE (user_id, tenant_id)
);
CREATE INDEX memberships_tenant_id_idx ON memberships (tenant_id, role);
CREATE INDEX memberships_invited_by_user_id_idx ON memberships (invited_by_user_id);

CREATE TABLE tenant_features (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id           uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    feature_key         text NOT NULL,
    enabled             boolean NOT NULL DEFAULT false,
    config              jsonb NOT NULL DEFAULT '{}',
    enabled_at          timestamptz,
    expires_at          timestamptz,
    created_by_user_id  uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    deleted_at          timestamptz,
    CONSTRAINT tenant_features_tenant_feature_key UNIQUE (tenant_id, feature_key)
);
CREATE INDEX tenant_features_feature_key_idx ON tenant_features (feature_key);
CREATE INDEX tenant_features_created_by_user_id_idx ON tenant_features (created_by_user_id);

CREATE TABLE user_capabilities (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id           uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    user_id             uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    capability_key      text NOT NULL,
    feature_key         text,            -- the tenant_features.feature_key this capability belongs to
    granted_by_user_id  uuid REFERENCES users (id) ON DELETE SET NULL,
    expires_at          timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    deleted_at          timestamptz,
    CONSTRAINT user_capabilities_tenant_user_capability_key UNIQUE (tenant_id, user_id, capability_key)
);
CREATE INDEX user_capabilities_user_id_idx ON user_capabilities (user_id);
CREATE INDEX user_capabilities_tenant_feature_idx ON user_capabilities (tenant_id, feature_key);
CREATE INDEX user_capabilities_granted_by_user_id_idx ON user_capabilities (granted_by_user_id);

CREATE TABLE tenant_invitations (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id           uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    email               text NOT NULL CHECK (email ~ '^[^@[:space:]]+@[^@[:space:]]+$'),
    role                text NOT NULL DEFAULT 'member'
                            CHECK (role IN ('owner', 'admin', 'member', 'viewer')),
    invitation_token    text NOT NULL CONSTRAINT tenant_invitations_invitation_token_key UNIQUE,
    status              text NOT NULL DEFAULT 'pending'
                            CHECK (status IN ('pending', 'accepted', 'expired', 'revoked')),
    message             text,
    expires_at          timestamptz NOT NULL DEFAULT now() + interval '7 days',
    accepted_at         timestamptz,
    accepted_by_user_id uuid REFERENCES users (id) ON DELETE SET NULL,
    created_by_user_id  uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    deleted_at          timestamptz
);
CREATE INDEX tenant_invitations_tenant_status_idx ON tenant_invitations (tenant_id, status);
CREATE INDEX tenant_invitations_email_idx ON tenant_invitations (lower(email));
CREATE INDEX tenant_invitations_accepted_by_user_id_idx ON tenant_invitations (accepted_by_user_id);
CREATE INDEX tenant_invitations_created_by_user_id_idx ON tenant_invitations (created_by_user_id);

-- Append-only event store. Because rows may never be updated or deleted:
--   * tenant_id is ON DELETE RESTRICT, not CASCADE (a cascade would be a DELETE
--     and be refused by the trigger anyway; tenants are soft-deleted);
--   * actor_user_id has no FK, since ON DELETE SET NULL would rewrite history.
CREATE TABLE domain_events (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id       uuid NOT NULL REFERENCES tenants (id) ON DELETE RESTRICT,
    event_type      text NOT NULL,
    event_version   integer NOT NULL DEFAULT 1 CHECK (event_version > 0),
    aggregate_type  text,
    aggregate_id    uuid,
    actor_user_id   uuid,
    correlation_id  uuid,
    causation_id    uuid,
    payload         jsonb NOT NULL DEFAULT '{}',
    metadata        jsonb NOT NULL DEFAULT '{}',
    occurred_at     timestamptz NOT NULL DEFAULT now(),
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX domain_events_tenant_created_idx ON domain_events (tenant_id, created_at DESC);
CREATE INDEX domain_events_tenant_type_created_idx ON domain_events (tenant_id, event_type, created_at DESC);
CREATE INDEX domain_events_aggregate_idx ON domain_events (aggregate_type, aggregate_id, created_at);
CREATE INDEX domain_events_actor_user_id_idx ON domain_events (actor_user_id);
CREATE TRIGGER domain_events_append_only
    BEFORE UPDATE OR DELETE ON domain_events
    FOR EACH ROW EXECUTE FUNCTION lad_forbid_mutation();

-- Dynamic toggles. Scope: global (tenant_id and user_id NULL), tenant
-- (tenant_id set) or user (user_id set, optionally within a tenant).
CREATE TABLE feature_flags (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    feature_key         text NOT NULL,
    tenant_id           uuid REFERENCES tenants (id) ON DELETE CASCADE,
    user_id             uuid REFERENCES users (id) ON DELETE CASCADE,
    is_enabled          boolean NOT NULL DEFAULT false,
    rollout_percentage  integer CHECK (rollout_percentage BETWEEN 0 AND 100),
    conditions          jsonb NOT NULL DEFAULT '{}',
    description         text,
    expires_at          timestamptz,
    created_by_user_id  uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    deleted_at          timestamptz
);
-- One flag per scope; NULLS NOT DISTINCT so the global row is unique too.
CREATE UNIQUE INDEX feature_flags_scope_key
    ON feature_flags (feature_key, tenant_id, user_id) NULLS NOT DISTINCT;
CREATE INDEX feature_flags_tenant_id_idx ON feature_flags (tenant_id) WHERE tenant_id IS NOT NULL;
CREATE INDEX feature_flags_user_id_idx ON feature_flags (user_id) WHERE user_id IS NOT NULL;
CREATE INDEX feature_flags_created_by_user_id_idx ON feature_flags (created_by_user_id);


-- =============================================================================
-- 2. LEADS & PIPELINE (7)
-- =============================================================================

-- leads.stage / leads.status hold lead_stages.key / lead_statuses.key. They
-- are not foreign keys: stages are tenant-configurable and soft-deleted, and
-- a lead must be insertable before a tenant has customised its pipeline.
CREATE TABLE leads (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id           uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    first_name          text,
    last_name           text,
    full_name           text,
    email               text,
    phone               text,
    company_name        text,
    company_domain      text,
    job_title           text,
    linkedin_url        text,
    website_url         text,
    country             text,
    city                text,
    timezone            text,
    source              text,            -- manual, import, apollo, campaign, api, ...
    stage               text NOT NULL DEFAULT 'new',
    status              text NOT NULL DEFAULT 'active',
    score               integer CHECK (score BETWEEN 0 AND 100),
    estimated_value     numeric(20,2) CHECK (estimated_value >= 0),
    currency            text NOT NULL DEFAULT 'USD' CHECK (currency ~ '^[A-Z]{3}$'),
    tags                text[] NOT NULL DEFAULT '{}',
    custom_fields       jsonb NOT NULL DEFAULT '{}',
    metadata            jsonb NOT NULL DEFAULT '{}',
    apollo_person_id    text,
    owner_user_id       uuid REFERENCES users (id) ON DELETE SET NULL,
    created_by_user_id  uuid REFERENCES users (id) ON DELETE SET NULL,
    last_contacted_at   timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    deleted_at          timestamptz
);
CREATE INDEX leads_tenant_created_idx ON leads (tenant_id, created_at DESC);
CREATE INDEX leads_tenant_stage_idx ON leads (tenant_id, stage) WHERE deleted_at IS NULL;
CREATE INDEX leads_tenant_status_idx ON leads (tenant_id, status) WHERE deleted_at IS NULL;
CREATE INDEX leads_tenant_email_idx ON leads (tenant_id, lower(email)) WHERE email IS NOT NULL;
CREATE INDEX leads_tenant_phone_idx ON leads (tenant_id, phone) WHERE phone IS NOT NULL;
CREATE INDEX leads_owner_user_id_idx ON leads (owner_user_id);
CREATE INDEX leads_created_by_user_id_idx ON leads (created_by_user_id);

CREATE TABLE lead_stages (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id       uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    key             text NOT NULL CHECK (key ~ '^[a-z0-9_]+$'),
    label           text NOT NULL,
    description     text,
    color           text,
    display_order   integer NOT NULL DEFAULT 0 CHECK (display_order >= 0),
    is_default      boolean NOT NULL DEFAULT false,
    is_closed       boolean NOT NULL DEFAULT false,   -- won/lost style terminal stage
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    deleted_at      timestamptz,
    CONSTRAINT lead_stages_tenant_key_key UNIQUE (tenant_id, key)
);
CREATE INDEX lead_stages_tenant_order_idx ON lead_stages (tenant_id, display_order);

CREATE TABLE lead_statuses (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id       uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    key             text NOT NULL CHECK (key ~ '^[a-z0-9_]+$'),
    label           text NOT NULL,
    description     text,
    color           text,
    display_order   integer NOT NULL DEFAULT 0 CHECK (display_order >= 0),
    is_default      boolean NOT NULL DEFAULT false,
    is_final        boolean NOT NULL DEFAULT false,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    deleted_at      timestamptz,
    CONSTRAINT lead_statuses_tenant_key_key UNIQUE (tenant_id, key)
);
CREATE INDEX lead_statuses_tenant_order_idx ON lead_statuses (tenant_id, display_order);

CREATE TABLE lead_notes (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id           uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    lead_id             uuid NOT NULL REFERENCES leads (id) ON DELETE CASCADE,
    content             text NOT NULL CHECK (btrim(content) <> ''),
    is_pinned           boolean NOT NULL DEFAULT false,
    created_by_user_id  uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    deleted_at          timestamptz
);
CREATE INDEX lead_notes_lead_created_idx ON lead_notes (lead_id, created_at DESC);
CREATE INDEX lead_notes_tenant_id_idx ON lead_notes (tenant_id);
CREATE INDEX lead_notes_created_by_user_id_idx ON lead_notes (created_by_user_id);

CREATE TABLE lead_attachments (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id           uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    lead_id             uuid NOT NULL REFERENCES leads (id) ON DELETE CASCADE,
    file_url            text NOT NULL,
    file_name           text NOT NULL,
    mime_type           text,
    file_size_bytes     bigint CHECK (file_size_bytes >= 0),
    storage_provider    text,            -- s3, gcs, ...
    storage_key         text,
    checksum_sha256     text,
    created_by_user_id  uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    deleted_at          timestamptz
);
CREATE INDEX lead_attachments_lead_id_idx ON lead_attachments (lead_id);
CREATE INDEX lead_attachments_tenant_id_idx ON lead_attachments (tenant_id);
CREATE INDEX lead_attachments_created_by_user_id_idx ON lead_attachments (created_by_user_id);

-- Call scheduling with retries. agent_id gets its FK to voice_agents in the
-- voice section (that table is created later).
CREATE TABLE lead_bookings (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id           uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    lead_id             uuid NOT NULL REFERENCES leads (id) ON DELETE CASCADE,
    booking_type        text NOT NULL DEFAULT 'call'
                            CHECK (booking_type IN ('call', 'meeting', 'demo', 'follow_up')),
    scheduled_at        timestamptz NOT NULL,
    duration_minutes    integer CHECK (duration_minutes > 0),
    timezone            text,
    status              text NOT NULL DEFAULT 'scheduled'
                            CHECK (status IN ('scheduled', 'confirmed', 'in_progress', 'completed',
                                              'canceled', 'no_show', 'failed', 'rescheduled')),
    retry_count         integer NOT NULL DEFAULT 0 CHECK (retry_count >= 0),
    max_retries         integer NOT NULL DEFAULT 3 CHECK (max_retries >= 0),
    last_attempt_at     timestamptz,
    next_retry_at       timestamptz,
    agent_id            uuid,
    call_log_id         uuid,            -- voice_call_logs.id (partitioned, no FK)
    assigned_user_id    uuid REFERENCES users (id) ON DELETE SET NULL,
    created_by_user_id  uuid REFERENCES users (id) ON DELETE SET NULL,
    notes               text,
    metadata            jsonb NOT NULL DEFAULT '{}',
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    deleted_at          timestamptz
);
CREATE INDEX lead_bookings_lead_status_scheduled_idx ON lead_bookings (lead_id, status, scheduled_at);
CREATE INDEX lead_bookings_tenant_scheduled_idx ON lead_bookings (tenant_id, scheduled_at);
CREATE INDEX lead_bookings_due_idx ON lead_bookings (scheduled_at)
    WHERE status IN ('scheduled', 'confirmed') AND deleted_at IS NULL;
CREATE INDEX lead_bookings_agent_id_idx ON lead_bookings (agent_id);
CREATE INDEX lead_bookings_assigned_user_id_idx ON lead_bookings (assigned_user_id);
CREATE INDEX lead_bookings_created_by_user_id_idx ON lead_bookings (created_by_user_id);

CREATE TABLE lead_social (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id       uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    lead_id         uuid NOT NULL REFERENCES leads (id) ON DELETE CASCADE,
    platform        text NOT NULL DEFAULT 'linkedin'
                        CHECK (platform IN ('linkedin', 'twitter', 'facebook', 'instagram', 'github', 'other')),
    profile_url     text,
    external_id     text,
    data            jsonb NOT NULL DEFAULT '{}',
    fetched_at      timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    deleted_at      timestamptz,
    CONSTRAINT lead_social_lead_platform_key UNIQUE (lead_id, platform)
);
CREATE INDEX lead_social_tenant_id_idx ON lead_social (tenant_id);


-- =============================================================================
-- 3. CAMPAIGNS (4)
-- =============================================================================

CREATE TABLE campaigns (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id           uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name                text NOT NULL CHECK (btrim(name) <> ''),
    description         text,
    campaign_type       text NOT NULL DEFAULT 'multichannel'
                            CHECK (campaign_type IN ('email', 'linkedin', 'voice', 'multichannel')),
    status              text NOT NULL DEFAULT 'draft'
                            CHECK (status IN ('draft', 'scheduled', 'running', 'paused', 'completed', 'archived')),
    timezone            text NOT NULL DEFAULT 'UTC',
    starts_at           timestamptz,
    ends_at             timestamptz,
    daily_limit         integer CHECK (daily_limit >= 0),
    settings            jsonb NOT NULL DEFAULT '{}',
    stats               jsonb NOT NULL DEFAULT '{}',   -- denormalised counters
    created_by_user_id  uuid REFERENCES users (id) ON DELETE SET NULL,
    is_deleted          boolean NOT NULL DEFAULT false, -- kept in sync with deleted_at by trigger
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    deleted_at          timestamptz,
    CONSTRAINT campaigns_schedule_check CHECK (ends_at IS NULL OR starts_at IS NULL OR ends_at >= starts_at)
);
CREATE INDEX campaigns_tenant_status_idx ON campaigns (tenant_id, status);
CREATE INDEX campaigns_status_live_idx ON campaigns (status) WHERE is_deleted = false;
CREATE INDEX campaigns_tenant_created_idx ON campaigns (tenant_id, created_at DESC);
CREATE INDEX campaigns_created_by_user_id_idx ON campaigns (created_by_user_id);
CREATE TRIGGER campaigns_sync_is_deleted
    BEFORE INSERT OR UPDATE ON campaigns
    FOR EACH ROW EXECUTE FUNCTION lad_sync_is_deleted();

-- Seed names the columns "type" and "order"; they are step_type / step_order
-- here ("order" is reserved) and match campaign_lead_activities.step_type.
-- template_id gets its FK in the communication section.
CREATE TABLE campaign_steps (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id           uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    campaign_id         uuid NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    step_type           text NOT NULL
                            CHECK (step_type IN ('email', 'linkedin_connect', 'linkedin_message',
                                                 'voice_call', 'delay', 'other')),
    step_order          integer NOT NULL CHECK (step_order >= 0),
    name                text,
    delay_minutes       integer NOT NULL DEFAULT 0 CHECK (delay_minutes >= 0),
    template_id         uuid,
    config              jsonb NOT NULL DEFAULT '{}',
    is_active           boolean NOT NULL DEFAULT true,
    created_by_user_id  uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    deleted_at          timestamptz
);
CREATE INDEX campaign_steps_campaign_order_idx ON campaign_steps (campaign_id, step_order);
CREATE INDEX campaign_steps_tenant_id_idx ON campaign_steps (tenant_id);
CREATE INDEX campaign_steps_template_id_idx ON campaign_steps (template_id);
CREATE INDEX campaign_steps_created_by_user_id_idx ON campaign_steps (created_by_user_id);

-- EVENT-FED (hub, from Kafka): no foreign keys to tenants, campaigns, leads or
-- campaign_steps. Enrollment events may arrive before the owning services'
-- rows exist here (or those rows live in another service's database); FKs
-- would turn out-of-order delivery into rejected events.
-- (campaign_id, lead_id) is deliberately not unique: the hub keys rows by id.
CREATE TABLE campaign_leads (
    id                      uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id               uuid NOT NULL,
    campaign_id             uuid NOT NULL,
    lead_id                 uuid NOT NULL,
    status                  text NOT NULL DEFAULT 'active'
                                CHECK (status IN ('active', 'paused', 'completed', 'replied',
                                                  'bounced', 'failed', 'unsubscribed')),
    current_step_id         uuid,
    current_step_type       text,
    last_activity_status    text,
    last_activity_at        timestamptz,
    last_activity_event_id  uuid,
    enrolled_at             timestamptz NOT NULL DEFAULT now(),
    completed_at            timestamptz,
    metadata                jsonb NOT NULL DEFAULT '{}',
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now(),
    deleted_at              timestamptz
);
CREATE INDEX campaign_leads_campaign_status_idx ON campaign_leads (campaign_id, status);
CREATE INDEX campaign_leads_tenant_campaign_idx ON campaign_leads (tenant_id, campaign_id);
CREATE INDEX campaign_leads_lead_id_idx ON campaign_leads (lead_id);

-- EVENT-FED (hub, from Kafka): no foreign keys to tenants, campaigns, leads,
-- campaign_steps or campaign_leads, for the same reason: an activity event can
-- be delivered before the enrollment/campaign it refers to; FKs would turn
-- ordering into rejections. event_id UNIQUE makes redelivery idempotent.
CREATE TABLE campaign_lead_activities (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id           uuid NOT NULL,
    event_id            uuid NOT NULL CONSTRAINT campaign_lead_activities_event_id_key UNIQUE,
    campaign_id         uuid NOT NULL,
    campaign_lead_id    uuid NOT NULL,
    lead_id             uuid NOT NULL,
    step_id             uuid NOT NULL,
    step_type           text NOT NULL
                            CHECK (step_type IN ('email', 'linkedin_connect', 'linkedin_message',
                                                 'voice_call', 'delay', 'other')),
    status              text NOT NULL
                            CHECK (status IN ('sent', 'delivered', 'opened', 'clicked', 'replied',
                                              'bounced', 'failed', 'skipped')),
    error               text,
    occurred_at         timestamptz NOT NULL,
    metadata            jsonb NOT NULL DEFAULT '{}',
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    deleted_at          timestamptz
);
CREATE INDEX campaign_lead_activities_lead_occurred_idx
    ON campaign_lead_activities (campaign_lead_id, occurred_at DESC);
CREATE INDEX campaign_lead_activities_tenant_campaign_created_idx
    ON campaign_lead_activities (tenant_id, campaign_id, created_at DESC);
CREATE INDEX campaign_lead_activities_step_id_idx ON campaign_lead_activities (step_id);
CREATE INDEX campaign_lead_activities_lead_id_idx ON campaign_lead_activities (lead_id);


-- =============================================================================
-- 4. COMMUNICATION (4)
-- =============================================================================

CREATE TABLE communication_templates (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id           uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    channel             text NOT NULL
                            CHECK (channel IN ('email', 'linkedin', 'sms', 'whatsapp', 'voice')),
    template_key        text NOT NULL,
    name                text NOT NULL,
    subject             text,            -- email only
    body                text NOT NULL,
    variables           jsonb NOT NULL DEFAULT '[]',   -- placeholder names used in body/subject
    version             integer NOT NULL DEFAULT 1 CHECK (version > 0),
    is_active           boolean NOT NULL DEFAULT true,
    created_by_user_id  uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    deleted_at          timestamptz,
    CONSTRAINT communication_templates_tenant_channel_key_key UNIQUE (tenant_id, channel, template_key)
);
CREATE INDEX communication_templates_created_by_user_id_idx ON communication_templates (created_by_user_id);

ALTER TABLE campaign_steps
    ADD CONSTRAINT campaign_steps_template_id_fkey
    FOREIGN KEY (template_id) REFERENCES communication_templates (id) ON DELETE SET NULL;

CREATE TABLE email_accounts (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id           uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    user_id             uuid REFERENCES users (id) ON DELETE SET NULL,   -- mailbox owner, if personal
    email               text NOT NULL CHECK (email ~ '^[^@[:space:]]+@[^@[:space:]]+$'),
    display_name        text,
    provider            text NOT NULL DEFAULT 'smtp'
                            CHECK (provider IN ('smtp', 'gmail', 'outlook', 'ses', 'sendgrid', 'other')),
    smtp_host           text,
    smtp_port           integer CHECK (smtp_port BETWEEN 1 AND 65535),
    smtp_username       text,
    smtp_password       text,            -- stored plain per seed; use a secrets manager
    smtp_use_tls        boolean NOT NULL DEFAULT true,
    imap_host           text,
    imap_port           integer CHECK (imap_port BETWEEN 1 AND 65535),
    daily_send_limit    integer NOT NULL DEFAULT 200 CHECK (daily_send_limit >= 0),
    sent_today          integer NOT NULL DEFAULT 0 CHECK (sent_today >= 0),
    status              text NOT NULL DEFAULT 'active'
                            CHECK (status IN ('active', 'paused', 'error', 'disconnected')),
    is_default          boolean NOT NULL DEFAULT false,
    last_error          text,
    last_used_at        timestamptz,
    created_by_user_id  uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    deleted_at          timestamptz
);
CREATE UNIQUE INDEX email_accounts_tenant_email_key
    ON email_accounts (tenant_id, lower(email)) WHERE deleted_at IS NULL;
CREATE INDEX email_accounts_tenant_id_idx ON email_accounts (tenant_id, status);
CREATE INDEX email_accounts_user_id_idx ON email_accounts (user_id);
CREATE INDEX email_accounts_created_by_user_id_idx ON email_accounts (created_by_user_id);

CREATE TABLE social_linkedin_accounts (
    id                      uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id               uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    user_id                 uuid REFERENCES users (id) ON DELETE SET NULL,
    unipile_account_id      text NOT NULL,
    account_name            text,
    linkedin_profile_id     text,
    profile_url             text,
    email                   text,
    status                  text NOT NULL DEFAULT 'active'
                                CHECK (status IN ('active', 'disconnected', 'expired', 'restricted', 'error')),
    daily_connection_limit  integer NOT NULL DEFAULT 20 CHECK (daily_connection_limit >= 0),
    daily_message_limit     integer NOT NULL DEFAULT 50 CHECK (daily_message_limit >= 0),
    connected_at            timestamptz,
    last_synced_at          timestamptz,
    last_error              text,
    metadata                jsonb NOT NULL DEFAULT '{}',
    created_by_user_id      uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now(),
    deleted_at              timestamptz,
    CONSTRAINT social_linkedin_accounts_tenant_unipile_key UNIQUE (tenant_id, unipile_account_id)
);
CREATE INDEX social_linkedin_accounts_user_id_idx ON social_linkedin_accounts (user_id);
CREATE INDEX social_linkedin_accounts_created_by_user_id_idx ON social_linkedin_accounts (created_by_user_id);

CREATE TABLE campaign_linkedin_accounts (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id           uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    campaign_id         uuid NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    linkedin_account_id uuid NOT NULL REFERENCES social_linkedin_accounts (id) ON DELETE CASCADE,
    is_active           boolean NOT NULL DEFAULT true,
    daily_limit         integer CHECK (daily_limit >= 0),
    created_by_user_id  uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    deleted_at          timestamptz,
    CONSTRAINT campaign_linkedin_accounts_campaign_account_key UNIQUE (campaign_id, linkedin_account_id)
);
CREATE INDEX campaign_linkedin_accounts_tenant_id_idx ON campaign_linkedin_accounts (tenant_id);
CREATE INDEX campaign_linkedin_accounts_linkedin_account_id_idx ON campaign_linkedin_accounts (linkedin_account_id);
CREATE INDEX campaign_linkedin_accounts_created_by_user_id_idx ON campaign_linkedin_accounts (created_by_user_id);


-- =============================================================================
-- 5. ENRICHMENT (2) -- Apollo caches, per tenant
-- =============================================================================

CREATE TABLE company_search_cache (
    id                      uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id               uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    apollo_organization_id  text NOT NULL,
    name                    text,
    domain                  text,
    website_url             text,
    linkedin_url            text,
    industry                text,
    employee_count          integer CHECK (employee_count >= 0),
    annual_revenue          numeric(20,2) CHECK (annual_revenue >= 0),
    founded_year            integer CHECK (founded_year BETWEEN 1000 AND 3000),
    country                 text,
    city                    text,
    phone                   text,
    keywords                text[] NOT NULL DEFAULT '{}',
    search_params           jsonb NOT NULL DEFAULT '{}',  -- query that produced this hit
    raw_data                jsonb NOT NULL DEFAULT '{}',  -- full Apollo payload
    fetched_at              timestamptz NOT NULL DEFAULT now(),
    expires_at              timestamptz,
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now(),
    deleted_at              timestamptz,
    CONSTRAINT company_search_cache_tenant_org_key UNIQUE (tenant_id, apollo_organization_id)
);
CREATE INDEX company_search_cache_tenant_domain_idx ON company_search_cache (tenant_id, lower(domain));
CREATE INDEX company_search_cache_expires_at_idx ON company_search_cache (expires_at) WHERE expires_at IS NOT NULL;

CREATE TABLE employees_cache (
    id                      uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id               uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    apollo_person_id        text NOT NULL,
    apollo_organization_id  text,
    company_id              uuid REFERENCES company_search_cache (id) ON DELETE SET NULL,
    lead_id                 uuid REFERENCES leads (id) ON DELETE SET NULL,  -- once imported as a lead
    first_name              text,
    last_name               text,
    full_name               text,
    title                   text,
    seniority               text,
    departments             text[] NOT NULL DEFAULT '{}',
    email                   text,
    email_status            text,
    phone                   text,
    linkedin_url            text,
    country                 text,
    city                    text,
    raw_data                jsonb NOT NULL DEFAULT '{}',
    fetched_at              timestamptz NOT NULL DEFAULT now(),
    expires_at              timestamptz,
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now(),
    deleted_at              timestamptz,
    CONSTRAINT employees_cache_tenant_person_key UNIQUE (tenant_id, apollo_person_id)
);
CREATE INDEX employees_cache_tenant_org_idx ON employees_cache (tenant_id, apollo_organization_id);
CREATE INDEX employees_cache_company_id_idx ON employees_cache (company_id);
CREATE INDEX employees_cache_lead_id_idx ON employees_cache (lead_id);
CREATE INDEX employees_cache_expires_at_idx ON employees_cache (expires_at) WHERE expires_at IS NOT NULL;


-- =============================================================================
-- 6. EDUCATION VERTICAL (2)
-- =============================================================================

-- Created before education_students, which references it.
CREATE TABLE education_counsellors (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id           uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    user_id             uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    counselor_code      text NOT NULL,   -- spelling as in the seed
    specialization      text,
    languages           text[] NOT NULL DEFAULT '{}',
    max_active_students integer CHECK (max_active_students >= 0),
    is_active           boolean NOT NULL DEFAULT true,
    metadata            jsonb NOT NULL DEFAULT '{}',
    created_by_user_id  uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    deleted_at          timestamptz,
    CONSTRAINT education_counsellors_tenant_code_key UNIQUE (tenant_id, counselor_code),
    CONSTRAINT education_counsellors_tenant_user_key UNIQUE (tenant_id, user_id)
);
CREATE INDEX education_counsellors_user_id_idx ON education_counsellors (user_id);
CREATE INDEX education_counsellors_created_by_user_id_idx ON education_counsellors (created_by_user_id);

-- Vertical extension of a lead: one student record per lead.
CREATE TABLE education_students (
    id                      uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id               uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    lead_id                 uuid NOT NULL REFERENCES leads (id) ON DELETE CASCADE,
    counsellor_id           uuid REFERENCES education_counsellors (id) ON DELETE SET NULL,
    student_parent_name     text,
    parent_phone            text,
    parent_email            text,
    date_of_birth           date,
    current_education_level text,
    current_institution     text,
    grade_or_score          text,
    intended_program        text,
    intended_countries      text[] NOT NULL DEFAULT '{}',
    intake_term             text,        -- e.g. 'Fall 2026'
    budget                  numeric(20,2) CHECK (budget >= 0),
    budget_currency         text NOT NULL DEFAULT 'USD' CHECK (budget_currency ~ '^[A-Z]{3}$'),
    application_status      text NOT NULL DEFAULT 'prospect'
                                CHECK (application_status IN ('prospect', 'counselling', 'applying', 'applied',
                                                              'admitted', 'enrolled', 'rejected', 'withdrawn')),
    metadata                jsonb NOT NULL DEFAULT '{}',
    created_by_user_id      uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now(),
    deleted_at              timestamptz,
    CONSTRAINT education_students_lead_key UNIQUE (lead_id)
);
CREATE INDEX education_students_tenant_status_idx ON education_students (tenant_id, application_status);
CREATE INDEX education_students_counsellor_id_idx ON education_students (counsellor_id);
CREATE INDEX education_students_created_by_user_id_idx ON education_students (created_by_user_id);


-- =============================================================================
-- 7. CREDITS (2, legacy -- superseded by the billing module)
-- =============================================================================

CREATE TABLE user_credits (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id       uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    user_id         uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    balance         numeric(20,6) NOT NULL DEFAULT 0
                        CONSTRAINT user_credits_balance_non_negative CHECK (balance >= 0),
    lifetime_earned numeric(20,6) NOT NULL DEFAULT 0 CHECK (lifetime_earned >= 0),
    lifetime_spent  numeric(20,6) NOT NULL DEFAULT 0 CHECK (lifetime_spent >= 0),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    deleted_at      timestamptz,
    CONSTRAINT user_credits_tenant_user_key UNIQUE (tenant_id, user_id)
);
CREATE INDEX user_credits_user_id_idx ON user_credits (user_id);

CREATE TABLE credit_transactions (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id           uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    user_id             uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    user_credit_id      uuid REFERENCES user_credits (id) ON DELETE CASCADE,
    transaction_type    text NOT NULL
                            CHECK (transaction_type IN ('purchase', 'usage', 'refund', 'bonus', 'adjustment', 'expiry')),
    amount              numeric(20,6) NOT NULL CHECK (amount <> 0),   -- signed
    balance_after       numeric(20,6) CHECK (balance_after >= 0),
    description         text,
    reference_type      text,
    reference_id        uuid,
    idempotency_key     text,
    metadata            jsonb NOT NULL DEFAULT '{}',
    created_by_user_id  uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    deleted_at          timestamptz
);
CREATE UNIQUE INDEX credit_transactions_idempotency_key
    ON credit_transactions (tenant_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX credit_transactions_tenant_created_idx ON credit_transactions (tenant_id, created_at DESC);
CREATE INDEX credit_transactions_user_created_idx ON credit_transactions (user_id, created_at DESC);
CREATE INDEX credit_transactions_user_credit_id_idx ON credit_transactions (user_credit_id);
CREATE INDEX credit_transactions_created_by_user_id_idx ON credit_transactions (created_by_user_id);


-- =============================================================================
-- 8. BILLING (6)
--   usage (voice_call_logs, ai_messages, ...) -> billing_usage_events
--   -> charged via billing_ledger_transactions -> posted to billing_wallets.
--   The hub maintains billing_wallets.current_balance and writes balance_after
--   on each ledger row; nothing here recomputes balances.
-- =============================================================================

-- EVENT-FED (hub, from Kafka): no foreign keys to tenants or users. Credit
-- and usage events may arrive before the tenant/user rows exist in this
-- database (the identity service owns them); FKs would turn ordering into
-- rejections.
CREATE TABLE billing_wallets (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id       uuid NOT NULL,
    user_id         uuid,            -- NULL = the tenant's shared wallet
    current_balance numeric(20,6) NOT NULL DEFAULT 0
                        CONSTRAINT billing_wallets_balance_non_negative CHECK (current_balance >= 0),
    currency        text NOT NULL DEFAULT 'USD',
    status          text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'frozen', 'closed')),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    deleted_at      timestamptz
);
CREATE UNIQUE INDEX billing_wallets_tenant_wallet_key ON billing_wallets (tenant_id) WHERE user_id IS NULL;
CREATE UNIQUE INDEX billing_wallets_tenant_user_key ON billing_wallets (tenant_id, user_id) WHERE user_id IS NOT NULL;
CREATE INDEX billing_wallets_user_id_idx ON billing_wallets (user_id) WHERE user_id IS NOT NULL;

-- EVENT-FED (hub, from Kafka), IMMUTABLE. No foreign keys to tenants or users
-- (events may precede those rows; FKs would turn ordering into rejections).
-- wallet_id does reference billing_wallets (the hub creates the wallet in the
-- same transaction) with RESTRICT so history can never be orphaned.
-- usage_event_id / event_id are plain references (the usage event and its
-- ledger row point at each other; no FK cycle).
-- amount is signed: credits/refunds positive, debits negative.
CREATE TABLE billing_ledger_transactions (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id           uuid NOT NULL,
    wallet_id           uuid NOT NULL REFERENCES billing_wallets (id) ON DELETE RESTRICT,
    transaction_type    text NOT NULL CHECK (transaction_type IN ('credit', 'debit', 'refund', 'adjustment')),
    amount              numeric(20,6) NOT NULL CHECK (amount <> 0),
    balance_after       numeric(20,6) NOT NULL CHECK (balance_after >= 0),
    idempotency_key     text NOT NULL,
    usage_event_id      uuid,
    event_id            uuid,
    reason              text,
    metadata            jsonb NOT NULL DEFAULT '{}',
    created_at          timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT billing_ledger_transactions_idempotency_key UNIQUE (tenant_id, idempotency_key)
);
CREATE INDEX billing_ledger_transactions_tenant_created_idx
    ON billing_ledger_transactions (tenant_id, created_at DESC);
CREATE INDEX billing_ledger_transactions_wallet_created_idx
    ON billing_ledger_transactions (wallet_id, created_at);
CREATE INDEX billing_ledger_transactions_usage_event_id_idx
    ON billing_ledger_transactions (usage_event_id) WHERE usage_event_id IS NOT NULL;
CREATE TRIGGER billing_ledger_transactions_append_only
    BEFORE UPDATE OR DELETE ON billing_ledger_transactions
    FOR EACH ROW EXECUTE FUNCTION lad_forbid_mutation();

-- EVENT-FED (hub, from Kafka): no foreign keys to tenants or users. Usage is
-- reported by the producing services, possibly before their tenant/user rows
-- reach this database; FKs would turn ordering into rejections.
CREATE TABLE billing_usage_events (
    id                      uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id               uuid NOT NULL,
    user_id                 uuid,
    feature_key             text NOT NULL,
    usage_items             jsonb NOT NULL DEFAULT '[]',
    total_cost              numeric(20,6) NOT NULL CHECK (total_cost >= 0),
    currency                text NOT NULL DEFAULT 'USD',
    status                  text NOT NULL
                                CHECK (status IN ('pending', 'charged', 'insufficient_funds', 'failed', 'refunded')),
    idempotency_key         text NOT NULL,
    event_id                uuid,
    ledger_transaction_id   uuid,
    occurred_at             timestamptz NOT NULL,
    metadata                jsonb NOT NULL DEFAULT '{}',
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now(),
    deleted_at              timestamptz,
    CONSTRAINT billing_usage_events_idempotency_key UNIQUE (tenant_id, idempotency_key)
);
CREATE INDEX billing_usage_events_feature_status_created_idx
    ON billing_usage_events (feature_key, status, created_at);
CREATE INDEX billing_usage_events_tenant_created_idx
    ON billing_usage_events (tenant_id, created_at DESC);
CREATE INDEX billing_usage_events_user_id_idx
    ON billing_usage_events (user_id) WHERE user_id IS NOT NULL;
CREATE INDEX billing_usage_events_ledger_transaction_id_idx
    ON billing_usage_events (ledger_transaction_id) WHERE ledger_transaction_id IS NOT NULL;

-- Global price list. One active price per (category, provider, model, unit);
-- superseded prices are kept with is_active = false / effective_to set.
CREATE TABLE billing_pricing_catalog (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    category        text NOT NULL,   -- voice, llm, enrichment, email, ...
    provider        text NOT NULL,
    model           text NOT NULL,
    unit            text NOT NULL,   -- minute, 1k_tokens, request, ...
    unit_price      numeric(20,8) NOT NULL CHECK (unit_price >= 0),
    currency        text NOT NULL DEFAULT 'USD',
    description     text,
    is_active       boolean NOT NULL DEFAULT true,
    effective_from  timestamptz NOT NULL DEFAULT now(),
    effective_to    timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    deleted_at      timestamptz,
    CONSTRAINT billing_pricing_catalog_effective_range_check
        CHECK (effective_to IS NULL OR effective_to > effective_from)
);
CREATE UNIQUE INDEX billing_pricing_catalog_active_key
    ON billing_pricing_catalog (category, provider, model, unit)
    WHERE is_active AND deleted_at IS NULL;

CREATE TABLE billing_invoices (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id           uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    invoice_number      text NOT NULL,
    status              text NOT NULL DEFAULT 'draft'
                            CHECK (status IN ('draft', 'open', 'paid', 'void', 'uncollectible')),
    currency            text NOT NULL DEFAULT 'USD' CHECK (currency ~ '^[A-Z]{3}$'),
    subtotal            numeric(20,6) NOT NULL DEFAULT 0 CHECK (subtotal >= 0),
    tax                 numeric(20,6) NOT NULL DEFAULT 0 CHECK (tax >= 0),
    discount            numeric(20,6) NOT NULL DEFAULT 0 CHECK (discount >= 0),
    total               numeric(20,6) NOT NULL DEFAULT 0 CHECK (total >= 0),
    amount_paid         numeric(20,6) NOT NULL DEFAULT 0 CHECK (amount_paid >= 0),
    period_start        timestamptz,
    period_end          timestamptz,
    issued_at           timestamptz,
    due_at              timestamptz,
    paid_at             timestamptz,
    line_items          jsonb NOT NULL DEFAULT '[]',
    billing_details     jsonb NOT NULL DEFAULT '{}',   -- address/tax id snapshot at issue time
    payment_provider    text,
    external_invoice_id text,
    pdf_url             text,
    metadata            jsonb NOT NULL DEFAULT '{}',
    created_by_user_id  uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    deleted_at          timestamptz,
    CONSTRAINT billing_invoices_tenant_number_key UNIQUE (tenant_id, invoice_number),
    CONSTRAINT billing_invoices_period_check
        CHECK (period_end IS NULL OR period_start IS NULL OR period_end >= period_start)
);
CREATE INDEX billing_invoices_tenant_status_idx ON billing_invoices (tenant_id, status, issued_at DESC);
CREATE INDEX billing_invoices_created_by_user_id_idx ON billing_invoices (created_by_user_id);

CREATE TABLE billing_feature_entitlements (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id           uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    feature_key         text NOT NULL,
    plan_tier           text,
    is_enabled          boolean NOT NULL DEFAULT true,
    monthly_quota       numeric(20,6) CHECK (monthly_quota >= 0),   -- NULL = unlimited
    used_this_period    numeric(20,6) NOT NULL DEFAULT 0 CHECK (used_this_period >= 0),
    quota_unit          text,
    period_start        timestamptz,
    period_end          timestamptz,
    overage_allowed     boolean NOT NULL DEFAULT false,
    overage_unit_price  numeric(20,8) CHECK (overage_unit_price >= 0),
    metadata            jsonb NOT NULL DEFAULT '{}',
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    deleted_at          timestamptz,
    CONSTRAINT billing_feature_entitlements_tenant_feature_key UNIQUE (tenant_id, feature_key)
);


-- =============================================================================
-- 9. AI ICP ASSISTANT (4)
-- =============================================================================

-- EVENT-FED (hub, from Kafka): no foreign keys to tenants or users. AI reply
-- events may arrive before the owning services' tenant/user rows exist here;
-- FKs would turn ordering into rejections. organization_id is an external id.
CREATE TABLE ai_conversations (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id       uuid NOT NULL,
    user_id         uuid NOT NULL,
    organization_id uuid,
    title           text,
    icp_data        jsonb NOT NULL DEFAULT '{}',
    status          text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'archived', 'completed')),
    last_message_at timestamptz,
    message_count   integer NOT NULL DEFAULT 0 CHECK (message_count >= 0),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    deleted_at      timestamptz
);
CREATE INDEX ai_conversations_user_org_created_idx
    ON ai_conversations (user_id, organization_id, created_at DESC);
CREATE INDEX ai_conversations_tenant_created_idx ON ai_conversations (tenant_id, created_at DESC);

-- EVENT-FED (hub, from Kafka): no foreign keys to tenants or users (same
-- reason as ai_conversations). The conversation FK is kept: the hub writes
-- the conversation row before its messages.
CREATE TABLE ai_messages (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id       uuid NOT NULL,
    conversation_id uuid NOT NULL REFERENCES ai_conversations (id) ON DELETE CASCADE,
    user_id         uuid,
    role            text NOT NULL CHECK (role IN ('user', 'assistant', 'system')),
    content         text NOT NULL,
    tokens_used     integer NOT NULL DEFAULT 0 CHECK (tokens_used >= 0),
    model           text,
    message_data    jsonb NOT NULL DEFAULT '{}',
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    deleted_at      timestamptz
);
CREATE INDEX ai_messages_conversation_created_idx ON ai_messages (conversation_id, created_at);
CREATE INDEX ai_messages_tenant_user_created_idx ON ai_messages (tenant_id, user_id, created_at DESC);

CREATE TABLE ai_icp_profiles (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id           uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    user_id             uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    conversation_id     uuid REFERENCES ai_conversations (id) ON DELETE SET NULL,  -- conversation it was sourced from
    name                text NOT NULL CHECK (btrim(name) <> ''),
    description         text,
    icp_data            jsonb NOT NULL DEFAULT '{}',
    search_params       jsonb NOT NULL DEFAULT '{}',
    is_default          boolean NOT NULL DEFAULT false,
    usage_count         integer NOT NULL DEFAULT 0 CHECK (usage_count >= 0),
    last_used_at        timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    deleted_at          timestamptz
);
CREATE INDEX ai_icp_profiles_tenant_user_idx ON ai_icp_profiles (tenant_id, user_id, created_at DESC);
CREATE INDEX ai_icp_profiles_user_id_idx ON ai_icp_profiles (user_id);
CREATE INDEX ai_icp_profiles_conversation_id_idx ON ai_icp_profiles (conversation_id);

-- Global cache of LLM keyword expansions (shared by all tenants).
CREATE TABLE ai_keyword_expansions (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    original_keyword    text NOT NULL CONSTRAINT ai_keyword_expansions_original_keyword_key UNIQUE,
    expanded_keywords   jsonb NOT NULL DEFAULT '[]'
                            CHECK (jsonb_typeof(expanded_keywords) = 'array'),
    context             text,
    model               text,
    tokens_used         integer NOT NULL DEFAULT 0 CHECK (tokens_used >= 0),
    usage_count         integer NOT NULL DEFAULT 0 CHECK (usage_count >= 0),
    last_used_at        timestamptz,
    expires_at          timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    deleted_at          timestamptz
);


-- =============================================================================
-- 10. VOICE AGENT SYSTEM (9)
--   Created in dependency order: voices, agents, numbers, profiles,
--   permissions, batches, batch entries, call logs, call analysis.
-- =============================================================================

CREATE TABLE voice_agent_voices (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id           uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    provider            text NOT NULL,   -- elevenlabs, azure, google, openai, ...
    provider_voice_id   text NOT NULL,
    name                text NOT NULL,
    gender              text CHECK (gender IN ('female', 'male', 'neutral')),
    accent              text,
    language            text,
    sample_url          text,
    settings            jsonb NOT NULL DEFAULT '{}',
    is_active           boolean NOT NULL DEFAULT true,
    created_by_user_id  uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    deleted_at          timestamptz,
    CONSTRAINT voice_agent_voices_tenant_provider_voice_key UNIQUE (tenant_id, provider, provider_voice_id)
);
CREATE INDEX voice_agent_voices_created_by_user_id_idx ON voice_agent_voices (created_by_user_id);

CREATE TABLE voice_agents (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id           uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name                text NOT NULL CHECK (btrim(name) <> ''),
    description         text,
    voice_id            uuid REFERENCES voice_agent_voices (id) ON DELETE SET NULL,
    language            text NOT NULL DEFAULT 'en-US',
    status              text NOT NULL DEFAULT 'active'
                            CHECK (status IN ('draft', 'active', 'inactive', 'archived')),
    system_prompt       text,
    first_message       text,
    llm_provider        text,
    llm_model           text,
    max_call_duration_seconds integer CHECK (max_call_duration_seconds > 0),
    config              jsonb NOT NULL DEFAULT '{}',
    created_by_user_id  uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    deleted_at          timestamptz
);
CREATE INDEX voice_agents_tenant_status_idx ON voice_agents (tenant_id, status);
CREATE INDEX voice_agents_voice_id_idx ON voice_agents (voice_id);
CREATE INDEX voice_agents_created_by_user_id_idx ON voice_agents (created_by_user_id);

-- Forward reference from the leads section.
ALTER TABLE lead_bookings
    ADD CONSTRAINT lead_bookings_agent_id_fkey
    FOREIGN KEY (agent_id) REFERENCES voice_agents (id) ON DELETE SET NULL;

CREATE TABLE voice_agent_numbers (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id           uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    country_code        text NOT NULL CHECK (country_code ~ '^\+?[0-9]{1,4}$'),
    base_number         text NOT NULL CHECK (base_number ~ '^[0-9]{4,15}$'),
    label               text,
    provider            text NOT NULL DEFAULT 'twilio'
                            CHECK (provider IN ('twilio', 'vonage', 'plivo', 'telnyx', 'sip', 'other')),
    provider_number_id  text,
    agent_id            uuid REFERENCES voice_agents (id) ON DELETE SET NULL,   -- default agent for inbound calls
    capabilities        jsonb NOT NULL DEFAULT '{}',    -- {"voice": true, "sms": false}
    status              text NOT NULL DEFAULT 'active'
                            CHECK (status IN ('pending', 'active', 'inactive', 'released')),
    monthly_cost        numeric(20,6) CHECK (monthly_cost >= 0),
    currency            text NOT NULL DEFAULT 'USD' CHECK (currency ~ '^[A-Z]{3}$'),
    created_by_user_id  uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    deleted_at          timestamptz
);
CREATE UNIQUE INDEX voice_agent_numbers_tenant_number_key
    ON voice_agent_numbers (tenant_id, country_code, base_number) WHERE deleted_at IS NULL;
CREATE INDEX voice_agent_numbers_tenant_id_idx ON voice_agent_numbers (tenant_id, status);
CREATE INDEX voice_agent_numbers_agent_id_idx ON voice_agent_numbers (agent_id);
CREATE INDEX voice_agent_numbers_created_by_user_id_idx ON voice_agent_numbers (created_by_user_id);

CREATE TABLE voice_user_profiles (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id           uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    user_id             uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    default_agent_id    uuid REFERENCES voice_agents (id) ON DELETE SET NULL,
    default_number_id   uuid REFERENCES voice_agent_numbers (id) ON DELETE SET NULL,
    default_voice_id    uuid REFERENCES voice_agent_voices (id) ON DELETE SET NULL,
    preferences         jsonb NOT NULL DEFAULT '{}',
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    deleted_at          timestamptz,
    CONSTRAINT voice_user_profiles_tenant_user_key UNIQUE (tenant_id, user_id)
);
CREATE INDEX voice_user_profiles_user_id_idx ON voice_user_profiles (user_id);
CREATE INDEX voice_user_profiles_default_agent_id_idx ON voice_user_profiles (default_agent_id);
CREATE INDEX voice_user_profiles_default_number_id_idx ON voice_user_profiles (default_number_id);
CREATE INDEX voice_user_profiles_default_voice_id_idx ON voice_user_profiles (default_voice_id);

-- Resource-scoped grants: each row grants a user access to a number, a voice
-- and/or an agent (at least one).
CREATE TABLE voice_permissions (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id           uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    user_id             uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    number_id           uuid REFERENCES voice_agent_numbers (id) ON DELETE CASCADE,
    voice_id            uuid REFERENCES voice_agent_voices (id) ON DELETE CASCADE,
    agent_id            uuid REFERENCES voice_agents (id) ON DELETE CASCADE,
    access_level        text NOT NULL DEFAULT 'use' CHECK (access_level IN ('use', 'manage')),
    granted_by_user_id  uuid REFERENCES users (id) ON DELETE SET NULL,
    expires_at          timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    deleted_at          timestamptz,
    CONSTRAINT voice_permissions_resource_check CHECK (num_nonnulls(number_id, voice_id, agent_id) >= 1)
);
CREATE UNIQUE INDEX voice_permissions_grant_key
    ON voice_permissions (tenant_id, user_id, number_id, voice_id, agent_id) NULLS NOT DISTINCT
    WHERE deleted_at IS NULL;
CREATE INDEX voice_permissions_user_id_idx ON voice_permissions (user_id);
CREATE INDEX voice_permissions_number_id_idx ON voice_permissions (number_id);
CREATE INDEX voice_permissions_voice_id_idx ON voice_permissions (voice_id);
CREATE INDEX voice_permissions_agent_id_idx ON voice_permissions (agent_id);
CREATE INDEX voice_permissions_granted_by_user_id_idx ON voice_permissions (granted_by_user_id);

CREATE TABLE voice_call_batches (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id           uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    agent_id            uuid REFERENCES voice_agents (id) ON DELETE SET NULL,
    number_id           uuid REFERENCES voice_agent_numbers (id) ON DELETE SET NULL,  -- caller id
    campaign_id         uuid REFERENCES campaigns (id) ON DELETE SET NULL,
    name                text,
    status              text NOT NULL DEFAULT 'pending'
                            CHECK (status IN ('pending', 'scheduled', 'running', 'paused',
                                              'completed', 'canceled', 'failed')),
    total_calls         integer NOT NULL DEFAULT 0 CHECK (total_calls >= 0),
    completed_calls     integer NOT NULL DEFAULT 0 CHECK (completed_calls >= 0),
    failed_calls        integer NOT NULL DEFAULT 0 CHECK (failed_calls >= 0),
    max_concurrency     integer NOT NULL DEFAULT 1 CHECK (max_concurrency > 0),
    total_cost          numeric(20,6) NOT NULL DEFAULT 0 CHECK (total_cost >= 0),
    currency            text NOT NULL DEFAULT 'USD' CHECK (currency ~ '^[A-Z]{3}$'),
    scheduled_at        timestamptz,
    started_at          timestamptz,
    completed_at        timestamptz,
    config              jsonb NOT NULL DEFAULT '{}',
    created_by_user_id  uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    deleted_at          timestamptz
);
CREATE INDEX voice_call_batches_tenant_created_idx ON voice_call_batches (tenant_id, created_at DESC);
CREATE INDEX voice_call_batches_tenant_status_idx ON voice_call_batches (tenant_id, status);
CREATE INDEX voice_call_batches_agent_id_idx ON voice_call_batches (agent_id);
CREATE INDEX voice_call_batches_number_id_idx ON voice_call_batches (number_id);
CREATE INDEX voice_call_batches_campaign_id_idx ON voice_call_batches (campaign_id);
CREATE INDEX voice_call_batches_created_by_user_id_idx ON voice_call_batches (created_by_user_id);

CREATE TABLE voice_call_batch_entries (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id       uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    batch_id        uuid NOT NULL REFERENCES voice_call_batches (id) ON DELETE CASCADE,
    lead_id         uuid REFERENCES leads (id) ON DELETE SET NULL,
    to_number       text NOT NULL,   -- captured at enqueue time; survives lead deletion
    position        integer NOT NULL DEFAULT 0 CHECK (position >= 0),
    status          text NOT NULL DEFAULT 'pending'
                        CHECK (status IN ('pending', 'queued', 'calling', 'completed',
                                          'failed', 'skipped', 'canceled')),
    attempt_count   integer NOT NULL DEFAULT 0 CHECK (attempt_count >= 0),
    call_log_id     uuid,            -- voice_call_logs.id (partitioned, no FK)
    variables       jsonb NOT NULL DEFAULT '{}',   -- per-call prompt variables
    last_error      text,
    processed_at    timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    deleted_at      timestamptz
);
CREATE INDEX voice_call_batch_entries_batch_status_idx ON voice_call_batch_entries (batch_id, status, position);
CREATE INDEX voice_call_batch_entries_tenant_id_idx ON voice_call_batch_entries (tenant_id);
CREATE INDEX voice_call_batch_entries_lead_id_idx ON voice_call_batch_entries (lead_id);
CREATE INDEX voice_call_batch_entries_call_log_id_idx ON voice_call_batch_entries (call_log_id)
    WHERE call_log_id IS NOT NULL;

-- EVENT-FED (hub, from Kafka): no foreign keys to tenants, users, leads,
-- voice_agents or voice_call_batches. Call events (call.started, answered,
-- ended, ...) may arrive before the agent/lead/tenant rows owned by other
-- services exist here; FKs would turn ordering into rejections.
--
-- Partitioned by month on created_at (seed: "partition voice_call_logs by
-- month for archiving"). The primary key must include the partition key, so
-- it is (id, created_at); a plain index on (id) serves lookups by id.
-- voice_call_logs_default catches rows outside the created partitions so an
-- insert never fails; lad_ensure_voice_call_log_partitions() adds months.
CREATE TABLE voice_call_logs (
    id                      uuid NOT NULL DEFAULT gen_random_uuid(),
    tenant_id               uuid NOT NULL,
    agent_id                uuid,
    lead_id                 uuid,
    batch_id                uuid,
    initiated_by_user_id    uuid,
    direction               text CHECK (direction IN ('outbound', 'inbound')),
    from_number             text,
    to_number               text,
    status                  text NOT NULL DEFAULT 'initiated'
                                CHECK (status IN ('initiated', 'in_progress', 'completed', 'failed',
                                                  'no_answer', 'busy', 'canceled')),
    started_at              timestamptz,
    answered_at             timestamptz,
    ended_at                timestamptz,
    duration_seconds        integer CHECK (duration_seconds >= 0),
    cost                    numeric(20,6) CHECK (cost >= 0),
    currency                text NOT NULL DEFAULT 'USD' CHECK (currency ~ '^[A-Z]{3}$'),
    recording_url           text,
    metadata                jsonb NOT NULL DEFAULT '{}',
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now(),
    deleted_at              timestamptz,
    CONSTRAINT voice_call_logs_pkey PRIMARY KEY (id, created_at)
) PARTITION BY RANGE (created_at);

CREATE TABLE voice_call_logs_default PARTITION OF voice_call_logs DEFAULT;

CREATE INDEX voice_call_logs_tenant_created_idx ON voice_call_logs (tenant_id, created_at DESC);
CREATE INDEX voice_call_logs_agent_status_started_idx ON voice_call_logs (agent_id, status, started_at);
CREATE INDEX voice_call_logs_id_idx ON voice_call_logs (id);
CREATE INDEX voice_call_logs_tenant_batch_idx ON voice_call_logs (tenant_id, batch_id);
CREATE INDEX voice_call_logs_in_progress_idx ON voice_call_logs (tenant_id, created_at DESC)
    WHERE ended_at IS NULL;
CREATE INDEX voice_call_logs_lead_id_idx ON voice_call_logs (lead_id) WHERE lead_id IS NOT NULL;

-- Creates the monthly partitions voice_call_logs_yYYYYmMM covering
-- [this month - months_back, this month + months_ahead] (months in UTC) that
-- do not exist yet, and returns how many it created. A month is skipped when
-- voice_call_logs_default already holds rows for it (attaching the partition
-- would fail); those rows stay in the default partition. Safe to run
-- concurrently and repeatedly: an advisory lock serialises callers.
CREATE FUNCTION lad_ensure_voice_call_log_partitions(months_back int DEFAULT 1, months_ahead int DEFAULT 3)
RETURNS int
LANGUAGE plpgsql AS $$
DECLARE
    parent_schema   text;
    this_month      timestamptz := date_trunc('month', now(), 'UTC');
    month_start     timestamptz;
    month_end       timestamptz;
    part_name       text;
    created         int := 0;
    i               int;
BEGIN
    IF months_back < 0 OR months_ahead < 0 THEN
        RAISE EXCEPTION 'months_back and months_ahead must be >= 0 (got %, %)', months_back, months_ahead;
    END IF;

    SELECT n.nspname INTO parent_schema
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.oid = 'voice_call_logs'::regclass;

    PERFORM pg_advisory_xact_lock(hashtext('lad_ensure_voice_call_log_partitions'));

    FOR i IN -months_back .. months_ahead LOOP
        month_start := this_month + make_interval(months => i);
        month_end   := this_month + make_interval(months => i + 1);
        part_name   := 'voice_call_logs_' || to_char(month_start AT TIME ZONE 'UTC', '"y"YYYY"m"MM');

        CONTINUE WHEN to_regclass(format('%I.%I', parent_schema, part_name)) IS NOT NULL;

        -- Rows for this month already landed in the default partition.
        CONTINUE WHEN EXISTS (
            SELECT 1 FROM voice_call_logs_default
            WHERE created_at >= month_start AND created_at < month_end
        );

        BEGIN
            EXECUTE format(
                'CREATE TABLE %I.%I PARTITION OF %I.voice_call_logs FOR VALUES FROM (%L) TO (%L)',
                parent_schema, part_name, parent_schema,
                to_char(month_start AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
                to_char(month_end   AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'));
            created := created + 1;
        EXCEPTION
            WHEN duplicate_table THEN
                NULL;   -- created by someone else meanwhile
            WHEN invalid_object_definition THEN
                -- a differently named partition already covers (part of) this range
                RAISE NOTICE 'skipping %: range overlaps an existing partition', part_name;
        END;
    END LOOP;

    RETURN created;
END;
$$;

-- EVENT-FED (hub, from Kafka): no foreign keys to tenants or voice_call_logs.
-- call.analyzed may arrive before call.ended/the tenant row; FKs would turn
-- ordering into rejections. voice_call_logs is also partitioned with a
-- composite key (id, created_at), so call_log_id could not reference it.
CREATE TABLE voice_call_analysis (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id       uuid NOT NULL,
    call_log_id     uuid NOT NULL CONSTRAINT voice_call_analysis_call_log_id_key UNIQUE,
    sentiment       text CHECK (sentiment IN ('positive', 'neutral', 'negative')),
    lead_category   text,
    summary         text,
    analysis        jsonb NOT NULL DEFAULT '{}',
    analyzed_at     timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    deleted_at      timestamptz
);
CREATE INDEX voice_call_analysis_tenant_created_idx ON voice_call_analysis (tenant_id, created_at DESC);
CREATE INDEX voice_call_analysis_tenant_category_idx ON voice_call_analysis (tenant_id, lead_category);


-- =============================================================================
-- updated_at triggers: every table in this schema with an updated_at column.
-- Partitions are skipped; the trigger on a partitioned parent is cloned onto
-- each current and future partition automatically.
-- =============================================================================

DO $$
DECLARE
    t regclass;
BEGIN
    FOR t IN
        SELECT c.oid::regclass
        FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace
        JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'updated_at' AND NOT a.attisdropped
        WHERE n.nspname = current_schema()
          AND c.relkind IN ('r', 'p')
          AND NOT c.relispartition
        ORDER BY c.relname
    LOOP
        EXECUTE format(
            'CREATE TRIGGER %I BEFORE UPDATE ON %s FOR EACH ROW EXECUTE FUNCTION lad_set_updated_at()',
            (SELECT relname FROM pg_class WHERE oid = t) || '_set_updated_at', t);
    END LOOP;
END;
$$;


-- Monthly voice_call_logs partitions: the last 12 months and the next 3.
SELECT lad_ensure_voice_call_log_partitions(12, 3);
