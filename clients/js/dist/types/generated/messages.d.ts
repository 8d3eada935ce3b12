/** `data` of an `ai.reply.completed` event on lad.ai.icp-assistant.v1 (key conversation_id): the full reply. Stored once in ai_messages (role assistant; the conversation is created if it does not exist yet) and pushed on tenant:{tenant_id}:user:{user_id}:ai after commit. The first reply of a conversation_id fixes its tenant and user: a reply naming another tenant or user is rejected (rule_violation). */
export type AiReplyCompletedData = {
    /** The conversation (ai_conversations.id). */
    conversation_id: string;
    /** The reply's id (ai_messages.id). A message_id already stored is not stored or pushed again. */
    message_id: string;
    /** The user the reply is for. */
    user_id: string;
    /** The full text of the reply (may be empty). */
    content: string;
    /** Tokens consumed producing the reply. */
    tokens_used: number;
    /** Model that produced the reply. Optional: may be omitted or null. */
    model?: string | null;
};
/** `data` of an `ai.reply.delta` event on lad.ai.icp-assistant.v1 (key conversation_id): one streamed chunk of an assistant reply. Not stored: published at once to lad.live.v1 (before the batch's transaction, with id "ai:{message_id}:{seq}") and pushed on tenant:{tenant_id}:user:{user_id}:ai in seq order per message_id, each seq once. A delta whose predecessor is missing is held back; a missing delta is given up after 1 s or once 32 later deltas are held, and the stream goes on after it. Deltas of a message already completed are dropped. */
export type AiReplyDeltaData = {
    /** The conversation (ai_conversations.id). */
    conversation_id: string;
    /** The reply being streamed; the id it is stored under once completed. */
    message_id: string;
    /** The user the reply is for; selects the live channel. */
    user_id: string;
    /** Index of this chunk within the reply, from 0. */
    seq: number;
    /** Text appended to the reply (may be empty). */
    delta: string;
};
/** `data` of a `billing.credit` event on lad.billing.usage.v1 (key tenant_id): a wallet top-up (the wallet is created with balance 0 on first use). Written as one immutable credit row in billing_ledger_transactions and announced as billing.credited, followed by billing.wallet; an idempotency_key the tenant already used is not credited again. */
export type BillingCreditData = {
    /** Unique per tenant, shared with billing.usage keys: a credit whose key the tenant already used is not applied again and announces nothing. Must not be empty or blank; at most 255 bytes (UTF-8), longer is rejected (invalid_data). */
    idempotency_key: string;
    /** Amount credited. Must be > 0: zero or negative is rejected (invalid_data). Exact non-negative decimal written as a string (never a JSON number, no exponent, no sign, no leading '+' or '.', no trailing '.'), e.g. "12.50"; at most 14 integer digits and at most 6 fractional digits (the ledger is NUMERIC(20,6)), more is rejected (invalid_data). A credit that would take the balance to 10^14 or more is rejected (rule_violation). */
    amount: string;
    /** Why the wallet is credited (e.g. "stripe_payment", "promo"). Required, must be a string; may be empty. Stored as the ledger row's reason. */
    reason: string;
    /** Hub extension. Free-form object stored on the ledger row. Optional: may be omitted or null; any other type is rejected (invalid_data). */
    metadata?: {
        [key: string]: unknown;
    } | null;
};
/** `data` of a `billing.usage` event on lad.billing.usage.v1 (key tenant_id): usage to charge to the tenant's wallet (created with balance 0 on first use). The cost is `total_cost` if given, else the sum of quantity x unit price of the active billing_pricing_catalog row of each item's (category, provider, model, unit), summed exactly and rounded once to 6 places (half away from zero). An item with no price is rejected (rule_violation), not charged for free; a cost of 10^14 or more is rejected (rule_violation). An idempotency_key already used by the tenant (by a usage or a credit) is not charged again. A usage the balance cannot cover is recorded with status insufficient_funds, not charged, and announced as billing.rejected; otherwise it is charged (one debit ledger row, none for a zero cost), added to billing_cost_daily on the UTC day of occurred_at and announced as billing.charged, followed by billing.wallet. */
export type BillingUsageData = {
    /** Unique per tenant, shared with billing.credit keys (the ledger's unique key (tenant_id, idempotency_key) covers both): an event whose key the tenant already used is not charged again and announces nothing. Must not be empty or blank; at most 255 bytes (UTF-8), longer is rejected (invalid_data). */
    idempotency_key: string;
    /** The metered feature (e.g. "voice_calls", "apollo.search"): a lower-case identifier, ^[a-z][a-z0-9_.-]{0,63}$; anything else (empty, blank, upper case, free text) is rejected (invalid_data). */
    feature_key: string;
    /** The user who consumed the feature. Optional: may be omitted or null. */
    user_id?: string | null;
    /** What was consumed, priced from billing_pricing_catalog unless total_cost is given (then the items are stored as given and not looked up). Required; may be empty only when total_cost is given. */
    usage_items: {
        /** Pricing category (e.g. "llm", "telephony"). Must not be empty or blank. */
        category: string;
        /** Provider (e.g. "openai"). Must not be empty or blank. */
        provider: string;
        /** Model or product (e.g. "gpt-4o-mini"). Must not be empty or blank. */
        model: string;
        /** Unit of quantity (e.g. "1k_tokens", "minute"). Must not be empty or blank. */
        unit: string;
        /** Quantity consumed in `unit`, >= 0. Exact non-negative decimal written as a string (never a JSON number, no exponent, no sign, no leading '+' or '.', no trailing '.'), e.g. "12.50"; at most 14 integer digits and at most 6 fractional digits (the ledger is NUMERIC(20,6)), more is rejected (invalid_data). */
        quantity: string;
    }[];
    /** Total cost, >= 0; when given it is the cost (the pricing catalog is not consulted). Optional: may be omitted or null. Exact non-negative decimal written as a string (never a JSON number, no exponent, no sign, no leading '+' or '.', no trailing '.'), e.g. "12.50"; at most 14 integer digits and at most 6 fractional digits (the ledger is NUMERIC(20,6)), more is rejected (invalid_data). */
    total_cost?: string | null;
    /** Hub extension. Free-form object stored with the usage event and its ledger row. Optional: may be omitted or null; any other type is rejected (invalid_data). */
    metadata?: {
        [key: string]: unknown;
    } | null;
};
/** `data` of a `call.analyzed` event on lad.voice.call-events.v1: the post-call analysis, stored in voice_call_analysis (one row per call; of several analyses of one call the one with the latest occurred_at is kept). Pushed as `call.analyzed` on tenant:{tenant_id}:calls. May arrive before the call's other events. A call_id known for another tenant is rejected (rule_violation). */
export type CallAnalyzedData = {
    /** The call's id (also the Kafka record key on lad.voice.call-events.v1). */
    call_id: string;
    /** Overall sentiment of the lead. */
    sentiment: "positive" | "neutral" | "negative";
    /** Category the analysis assigns to the lead (free text, e.g. "hot"). Must not be empty or blank. */
    lead_category: string;
    /** Summary of the call. Optional: may be omitted or null. */
    summary?: string | null;
};
/** `data` of a `call.answered` event on lad.voice.call-events.v1: the callee picked up. Counts in voice_call_stats_daily.calls_answered on the UTC day of the envelope's occurred_at. */
export type CallAnsweredData = {
    /** The call's id (also the Kafka record key on lad.voice.call-events.v1). */
    call_id: string;
};
/** `data` of a `call.ended` event on lad.voice.call-events.v1: the call is over. On the UTC day of the envelope's occurred_at it adds to calls_completed (status completed) or calls_failed (any other status), and adds duration_seconds and cost to the agent's daily aggregate. A cost > 0 charges the tenant's wallet exactly once (feature_key "voice_calls", idempotency key "voice-call:{call_id}"). */
export type CallEndedData = {
    /** The call's id (also the Kafka record key on lad.voice.call-events.v1). */
    call_id: string;
    /** Final status of the call. */
    status: "completed" | "failed" | "no_answer" | "busy" | "canceled";
    /** Call duration in whole seconds. */
    duration_seconds: number;
    /** Cost of the call in `currency`, >= 0. Exact non-negative decimal written as a string (never a JSON number, no exponent, no sign, no leading '+' or '.', no trailing '.'), e.g. "12.50"; at most 14 integer digits and at most 6 fractional digits (the ledger is NUMERIC(20,6)), more is rejected (invalid_data). */
    cost: string;
    /** ISO 4217 currency code, three upper-case letters. Defaults to USD when omitted or null. */
    currency?: string | null;
    /** URL of the call recording. Optional: may be omitted or null. */
    recording_url?: string | null;
};
/** `data` of a `call.started` event on lad.voice.call-events.v1: a call was placed or received. Counts in voice_call_stats_daily.calls_started on the UTC day of the envelope's occurred_at. May arrive after other events of the same call; the stored call converges whatever the order. A call_id already stored for another tenant is rejected (rule_violation). */
export type CallStartedData = {
    /** The call's id (also the Kafka record key on lad.voice.call-events.v1). */
    call_id: string;
    /** The voice agent handling the call. */
    agent_id: string;
    /** The lead called. Optional: may be omitted or null. */
    lead_id?: string | null;
    /** Call direction. */
    direction: "outbound" | "inbound";
    /** Calling number (E.164 recommended). Must not be empty or blank. */
    from_number: string;
    /** Called number (E.164 recommended). Must not be empty or blank. */
    to_number: string;
    /** The voice call batch this call belongs to. Optional: may be omitted or null. */
    batch_id?: string | null;
    /** The user who started the call. Optional: may be omitted or null. */
    initiated_by_user_id?: string | null;
};
/** `data` of a `call.transcript` event on lad.voice.call-events.v1: one transcript line, stored in voice_call_transcripts once per (call_id, seq) and pushed as `call.transcript` on the channel tenant:{tenant_id}:call:{call_id}. A call_id known for another tenant is rejected (rule_violation). */
export type CallTranscriptData = {
    /** The call's id (also the Kafka record key on lad.voice.call-events.v1). */
    call_id: string;
    /** Position of the line within the call's transcript. A (call_id, seq) already stored is not stored or pushed again. */
    seq: number;
    /** Who spoke. */
    speaker: "agent" | "lead";
    /** What was said (may be empty). */
    text: string;
};
/** `data` of a `campaign.activity` event on lad.campaign.activities.v1 (key campaign_lead_id): a campaign step acted on a lead. Stored once in campaign_lead_activities; updates the enrollment row (campaign_leads) with the latest step and status; counted in campaign_step_stats(tenant_id, campaign_id, step_id, status, count). The first activity of a campaign_lead_id fixes its tenant, campaign and lead: a later activity of that campaign_lead_id naming another tenant, campaign or lead is rejected (rule_violation). Pushed as `campaign.activity` (the stored row) and `campaign.stats` (the running count) on tenant:{tenant_id}:campaign:{campaign_id}. */
export type CampaignActivityData = {
    /** The campaign. */
    campaign_id: string;
    /** The lead's enrollment in the campaign (campaign_leads.id). */
    campaign_lead_id: string;
    /** The lead. */
    lead_id: string;
    /** The campaign step (campaign_steps.id). */
    step_id: string;
    /** Kind of step. */
    step_type: "email" | "linkedin_connect" | "linkedin_message" | "voice_call" | "delay" | "other";
    /** Outcome of the step. */
    status: "sent" | "delivered" | "opened" | "clicked" | "replied" | "bounced" | "failed" | "skipped";
    /** Error detail, typically with status failed or bounced. Optional: may be omitted or null. */
    error?: string | null;
};
/** Value of each record the hub writes to lad.dead-letters.v1 (record key: the rejected record's original key, decoded as UTF-8; no key if it had none), one per rejected input record. The same rejection is stored in Postgres (hub_dead_letters, once per topic/partition/offset) in the same transaction as the partition's offset, and published through the transactional outbox after that transaction commits; the partition moves on. */
export type DeadLetterRecord = {
    /** Added by the outbox relay: "<outbox row id>.<index>" (e.g. "1234.1"), unique per published record and the same on a republish after a crash, so consumers can deduplicate on it. */
    id: string;
    /** Human-readable reason for the rejection. */
    reason: string;
    /** invalid_json: the record has no value or it is not valid JSON; invalid_envelope: the value is not a JSON object, or an envelope field is missing, has a wrong type, or an unsupported version; unknown_type: `type` is not an event type of this topic; invalid_data: `data` does not match its type's schema (the reason names the field, e.g. data.usage_items[0].quantity); rule_violation: well-formed but breaks a rule checked against the database (a usage item with no price, a cost or balance beyond NUMERIC(20,6), a call, enrollment or conversation that belongs to another tenant/campaign/lead/user), or the database refused the record's writes. */
    error_kind: "invalid_json" | "invalid_envelope" | "unknown_type" | "invalid_data" | "rule_violation";
    /** Topic the rejected record was read from. */
    topic: string;
    /** Partition of the rejected record. */
    partition: number;
    /** Offset of the rejected record. */
    offset: number;
    /** Original record key decoded as UTF-8 (invalid sequences replaced by U+FFFD); null if the record had no key. */
    key: string | null;
    /** Original record value bytes, standard base64 (empty string if the record had no value). */
    raw_base64: string;
    /** Original record value as text when it is valid UTF-8, else null (empty string if the record had no value). */
    raw_text: string | null;
    /** event_id of the record when the envelope could be read, else null (also null when the database refused the record's writes). */
    event_id: string | null;
    /** tenant_id of the record when the envelope could be read, else null (also null when the database refused the record's writes). */
    tenant_id: string | null;
    /** When the hub rejected the record (the batch's clock). */
    rejected_at: string;
};
/** The value of every record on the input topics (lad.voice.call-events.v1, lad.campaign.activities.v1, lad.billing.usage.v1, lad.ai.icp-assistant.v1) is one JSON object of this shape. A record with no value or a value that is not valid JSON is rejected as invalid_json; one that is not a JSON object, lacks a required envelope field or has a wrong type there as invalid_envelope; an unknown `type` for its topic as unknown_type; a `data` that breaks its type's schema as invalid_data; a well-formed event that breaks a rule checked against the database as rule_violation. Rejected records go to lad.dead-letters.v1 (see dead-letter.json). `data` is described by the schema named after `type` (e.g. call.ended.json). Unknown extra fields are ignored. */
export type Envelope = {
    /** Unique per event. An event_id already applied is a duplicate and changes nothing, however often and late it comes. */
    event_id: string;
    /** Event type; selects the schema of `data`. Must be a type of the topic the record is on (e.g. call.* on lad.voice.call-events.v1), else unknown_type. */
    type: "call.started" | "call.answered" | "call.transcript" | "call.ended" | "call.analyzed" | "campaign.activity" | "billing.usage" | "billing.credit" | "ai.reply.delta" | "ai.reply.completed";
    /** Version of the event's data shape. Omitted or null means 1. This hub reads version 1 only: any other value (or a non-integer) is rejected (invalid_envelope). */
    version?: 1 | null;
    /** The tenant the event belongs to. */
    tenant_id: string;
    /** When the event happened (RFC 3339, any offset; read as UTC). Aggregates count it on its UTC day. */
    occurred_at: string;
    /** Type-specific payload; see the schema named after `type`. */
    data: {
        [key: string]: unknown;
    };
};
/** Value of each record the hub writes to lad.live.v1 (record key: tenant_id), one per live message. Committed changes are written to a transactional outbox in the transaction that made them and published by the relay after commit (a crash between publish and clean-up republishes with the same `id`). `ai.reply.delta` records describe nothing stored: they are published directly (fire and forget) before the batch's transaction and carry no committed_at. Every gateway node reads this topic and pushes the message to subscribers of `channel`; the WebSocket `position` of the message is "<partition>:<offset>" of this record (for ai.reply.delta: its `id`). Public: analytics may subscribe; deduplicate on `id`. */
export type LiveRecord = {
    /** Unique id of the live message, stable across republishes: consumers deduplicate on it. Outbox records: "<outbox row id>.<index>" (e.g. "1234.0"), added by the relay. ai.reply.delta records: "ai:{message_id}:{seq}". */
    id: string;
    /** ai.reply.delta records only: the hub process that consumed the delta and pushed it to its own sockets in-process; that process's gateway skips the record, every other reader uses it. Absent when the consuming process runs no gateway. */
    origin?: string;
    /** The tenant; also the record key. */
    tenant_id: string;
    /** WebSocket channel the message belongs to: tenant:{tenant_id}:calls, tenant:{tenant_id}:call:{call_id}, tenant:{tenant_id}:campaign:{campaign_id}, tenant:{tenant_id}:billing or tenant:{tenant_id}:user:{user_id}:ai (UUIDs lower-case, hyphenated; the tenant is always the record's tenant_id). */
    channel: string;
    /** Live message type; selects the shape of `data` (asyncapi.yaml components/schemas, frame* and their data schemas). */
    type: "call.updated" | "call.stats" | "call.analyzed" | "call.transcript" | "campaign.activity" | "campaign.stats" | "billing.charged" | "billing.credited" | "billing.rejected" | "billing.wallet" | "ai.reply.delta" | "ai.reply.completed";
    /** State messages only (call.updated, call.stats, campaign.stats, billing.wallet): the entity the message describes, "<type>/<field>/..." from its data (e.g. "call.updated/<call id>"). A newer record with the same key supersedes an older one: the gateway conflates them for sockets that are behind. Absent on events, which are never superseded. */
    key?: string;
    /** Type-specific payload, the same as the `data` of the WebSocket message frame (see asyncapi.yaml components/schemas). */
    data: {
        [key: string]: unknown;
    };
    /** When the batch that produced the message was applied (its clock, taken inside the transaction). Absent on ai.reply.delta records. */
    committed_at?: string;
};
export type Uuid = string;
export type NullableUuid = string | null;
/** RFC 3339 timestamp in UTC (`Z`), as written by the hub. */
export type DateTime = string;
export type NullableDateTime = string | null;
/** Exact non-negative decimal as a string (never a JSON number). */
export type Decimal = string;
/** Exact non-negative amount as a decimal string with exactly 6 places (the ledger's NUMERIC(20,6)), e.g. "12.500000". */
export type Money = string;
/** ISO 4217 currency code. */
export type Currency = string;
/**
 * A point in the channel's stream: `"<partition>:<offset>"` of the `lad.live.v1`
 * record that carried the message, `"ai:{message_id}:{seq}"` for a streamed
 * assistant delta, or `"-1:<n>"`, an opaque point a gateway node hands out for
 * a channel it has no message of yet. Opaque to clients: store the last one
 * seen and send it back as `since`.
 */
export type Position = string;
/**
 * One of `tenant:{tenant_id}:calls`, `tenant:{tenant_id}:call:{call_id}`,
 * `tenant:{tenant_id}:campaign:{campaign_id}`, `tenant:{tenant_id}:billing`,
 * `tenant:{tenant_id}:user:{user_id}:ai`, with UUIDs in canonical lower-case
 * hyphenated form. Any other name (or spelling) is `unknown_channel`.
 */
export type ChannelName = string;
/**
 * Client-chosen request id, a JSON number or string, required on every client
 * frame and echoed unchanged in its answer.
 */
export type RequestId = number | string;
export type SubscribeFrame = {
    op: "subscribe";
    id: RequestId;
    channel: ChannelName;
    /**
     * Optional (null means absent): the last `position` the client saw on this
     * channel. Any string is accepted; one the gateway node cannot serve gives
     * `recovered: false`.
     */
    since?: string | null;
};
export type UnsubscribeFrame = {
    op: "unsubscribe";
    id: RequestId;
    channel: ChannelName;
};
export type PingFrame = {
    op: "ping";
    id: RequestId;
};
export type SubscribedFrame = {
    op: "subscribed";
    id: RequestId;
    channel: ChannelName;
    /**
     * The channel's current state; its shape depends on the channel:
     * `callsSnapshot`, `callSnapshot`, `campaignSnapshot`, `billingSnapshot` or
     * `aiSnapshot` (selected below by the channel name).
     */
    snapshot: {
        [key: string]: unknown;
    };
    position: Position;
    /**
     * true when `since` was given and the node can serve it: `position` then
     * equals `since` and every message after it follows. false otherwise.
     */
    recovered: boolean;
};
/** Extension. Answers a successful `unsubscribe`. */
export type UnsubscribedFrame = {
    op: "unsubscribed";
    id: RequestId;
    channel: ChannelName;
};
export type PongFrame = {
    op: "pong";
    id: RequestId;
};
export type ErrorFrame = {
    op: "error";
    /**
     * The `id` of the frame in error; null when it could not be read (not JSON,
     * not an object, binary frame, `id` missing, null or neither a number nor a
     * string).
     */
    id: number | string | null;
    /**
     * `forbidden`: the channel's tenant is not the token's, or the role,
     * capability or user does not allow it. `bad_request`: malformed frame, or a
     * subscribe beyond 256 subscriptions on the connection. `unknown_channel`:
     * not a channel name the hub knows. `not_subscribed` (extension): unsubscribe
     * of a channel this connection is not subscribed to. `internal`
     * (extension): the capability check or the snapshot could not be read (the
     * snapshot within 10 s); the subscription is not kept; retry the subscribe.
     * `rate_limited` (extension): subscribes of this user on this node exceed
     * its token bucket (`LAD_SUBSCRIBE_RATE` per second, `LAD_SUBSCRIBE_BURST`
     * at once, shared by the user's connections); nothing changed; the message
     * says after how many ms to retry.
     */
    code: "forbidden" | "bad_request" | "unknown_channel" | "not_subscribed" | "internal" | "rate_limited";
    /** Human-readable detail; never contains another tenant's data. */
    message: string;
};
/** Common shape of every `message` frame. */
export type MessageFrame = {
    op: "message";
    /**
     * Extension. The `lad.live.v1` record's id: `"<outbox row id>.<index>"`
     * (e.g. `"1234.0"`) or, for `ai.reply.delta`, `"ai:{message_id}:{seq}"`.
     * Unique per live message and stable across redeliveries, so clients can
     * deduplicate. Omitted only for a record without an id (the hub writes none).
     */
    id?: string;
    /** Extension. The tenant of the message (the token's tenant). */
    tenant_id: Uuid;
    channel: ChannelName;
    type: string;
    position: Position;
    data: {
        [key: string]: unknown;
    };
};
export type FrameCallUpdated = MessageFrame & {
    channel?: string;
    type?: "call.updated";
    data?: CallRow;
};
export type FrameCallStats = MessageFrame & {
    channel?: string;
    type?: "call.stats";
    data?: CallStatsRow;
};
export type FrameCallAnalyzed = MessageFrame & {
    channel?: string;
    type?: "call.analyzed";
    data?: CallAnalysisRow;
};
export type FrameCallTranscript = MessageFrame & {
    channel?: string;
    type?: "call.transcript";
    data?: TranscriptLine;
};
export type FrameCampaignActivity = MessageFrame & {
    channel?: string;
    type?: "campaign.activity";
    data?: CampaignActivityRow;
};
export type FrameCampaignStats = MessageFrame & {
    channel?: string;
    type?: "campaign.stats";
    data?: CampaignStatsRow;
};
export type FrameBillingCharged = MessageFrame & {
    channel?: string;
    type?: "billing.charged";
    data?: BillingCharged;
};
export type FrameBillingCredited = MessageFrame & {
    channel?: string;
    type?: "billing.credited";
    data?: BillingCredited;
};
export type FrameBillingRejected = MessageFrame & {
    channel?: string;
    type?: "billing.rejected";
    data?: BillingRejected;
};
export type FrameBillingWallet = MessageFrame & {
    channel?: string;
    type?: "billing.wallet";
    data?: BillingWallet;
};
export type FrameAiReplyDelta = MessageFrame & {
    channel?: string;
    type?: "ai.reply.delta";
    data?: AiReplyDeltaLive;
};
export type FrameAiReplyCompleted = MessageFrame & {
    channel?: string;
    type?: "ai.reply.completed";
    data?: AiMessageRow;
};
/**
 * The call's current `voice_call_logs` row (`call.updated` data), pushed when an
 * event changed it. Every field is present; fields not known yet (e.g. the agent
 * before a late `call.started`) are null. Snapshots add `updated_at`
 * (`callRowWithUpdatedAt`).
 */
export type CallRow = {
    id: Uuid;
    tenant_id: Uuid;
    agent_id: NullableUuid;
    lead_id: NullableUuid;
    batch_id: NullableUuid;
    initiated_by_user_id: NullableUuid;
    direction: "outbound" | "inbound" | null;
    from_number: string | null;
    to_number: string | null;
    /**
     * The `call.ended` status once the call ended; before that `in_progress` if
     * it was answered, else `initiated`.
     */
    status: "initiated" | "in_progress" | "completed" | "failed" | "no_answer" | "busy" | "canceled";
    started_at: NullableDateTime;
    answered_at: NullableDateTime;
    ended_at: NullableDateTime;
    duration_seconds: number | null;
    /** Decimal string (as sent in `call.ended`, or with 6 places once read back from the database). */
    cost: string | null;
    currency: Currency;
    recording_url: string | null;
    /** The earliest `occurred_at` of the call's events. */
    created_at: DateTime;
};
/** A call row as read for snapshots (`calls_in_progress` items, `call`). */
export type CallRowWithUpdatedAt = CallRow & {
    updated_at: DateTime;
};
/**
 * A `voice_call_stats_daily` row after the change (`call.stats` data): running
 * totals, not deltas. A call counts once its agent is known. Snapshots add
 * `updated_at` (`callStatsRowWithUpdatedAt`).
 */
export type CallStatsRow = {
    tenant_id: Uuid;
    /** UTC day, YYYY-MM-DD. */
    day: string;
    agent_id: Uuid;
    calls_started: number;
    calls_answered: number;
    calls_completed: number;
    calls_failed: number;
    total_duration_seconds: number;
    /** Decimal string as stored (NUMERIC(20,6), e.g. "1.465000"). */
    total_cost: Decimal;
};
/** A `voice_call_stats_daily` row as read for the calls snapshot. */
export type CallStatsRowWithUpdatedAt = CallStatsRow & {
    updated_at: DateTime;
};
/**
 * The stored `voice_call_analysis` row (`call.analyzed` data on
 * `tenant:{t}:calls`, extension). Pushed when the analysis was stored (an
 * analysis older than the stored one is not).
 */
export type CallAnalysisRow = {
    /** The call's id (the event's `call_id`). */
    call_log_id: Uuid;
    tenant_id: Uuid;
    sentiment: "positive" | "neutral" | "negative" | null;
    lead_category: string | null;
    summary: string | null;
    /** The `occurred_at` of the `call.analyzed` event. */
    analyzed_at: NullableDateTime;
};
/**
 * One stored transcript line (`call.transcript` data on
 * `tenant:{t}:call:{call_id}`, and call snapshot `transcript` items). Pushed
 * once per (call_id, seq).
 */
export type TranscriptLine = {
    call_id: Uuid;
    seq: number;
    speaker: "agent" | "lead";
    text: string;
    occurred_at: DateTime;
};
/** The stored `campaign_lead_activities` row (`campaign.activity` data). */
export type CampaignActivityRow = {
    /** The activity row's id. */
    id: Uuid;
    /** The `event_id` of the `campaign.activity` event. */
    event_id: Uuid;
    tenant_id: Uuid;
    campaign_id: Uuid;
    campaign_lead_id: Uuid;
    lead_id: Uuid;
    step_id: Uuid;
    step_type: "email" | "linkedin_connect" | "linkedin_message" | "voice_call" | "delay" | "other";
    status: "sent" | "delivered" | "opened" | "clicked" | "replied" | "bounced" | "failed" | "skipped";
    error: string | null;
    occurred_at: DateTime;
    /** When the hub stored the activity. */
    created_at: DateTime;
};
/**
 * A `campaign_step_stats` row after the change (`campaign.stats` data, and
 * campaign snapshot `stats` items): `count` is the running total, not a delta.
 */
export type CampaignStatsRow = {
    tenant_id: Uuid;
    campaign_id: Uuid;
    step_id: Uuid;
    status: "sent" | "delivered" | "opened" | "clicked" | "replied" | "bounced" | "failed" | "skipped";
    count: number;
    updated_at: DateTime;
};
/**
 * A usage was charged (`billing.charged` data), from `billing.usage` or from the
 * `call.ended` billing chain (feature `voice_calls`, key `voice-call:{call_id}`,
 * no user).
 */
export type BillingCharged = {
    /** The `billing_usage_events` row. */
    usage_event_id: Uuid;
    /** The debit `billing_ledger_transactions` row; null for a zero cost (no money moved). */
    ledger_transaction_id: NullableUuid;
    /** The event that caused the charge. */
    event_id: Uuid;
    idempotency_key: string;
    feature_key: string;
    user_id: NullableUuid;
    /** The cost taken from the wallet (positive, or zero). */
    amount: Money;
    balance_after: Money;
    currency: Currency;
    occurred_at: DateTime;
};
/** The wallet was credited (`billing.credited` data). */
export type BillingCredited = {
    ledger_transaction_id: Uuid;
    event_id: Uuid;
    idempotency_key: string;
    amount: Money;
    reason: string;
    balance_after: Money;
    currency: Currency;
    occurred_at: DateTime;
};
/**
 * A usage the balance could not cover; recorded with status insufficient_funds
 * and not charged (`billing.rejected` data). The cost is given both as `amount`
 * and as `cost`; `balance` is the balance it could not cover.
 */
export type BillingRejected = {
    usage_event_id: Uuid;
    event_id: Uuid;
    idempotency_key: string;
    feature_key: string;
    user_id: NullableUuid;
    amount: Money;
    cost: Money;
    balance: Money;
    currency: Currency;
    reason: "insufficient_funds";
    occurred_at: DateTime;
};
/**
 * The wallet after a batch recorded something against it (`billing.wallet`
 * data): one per tenant and batch, after that batch's other billing messages.
 */
export type BillingWallet = {
    wallet_id: Uuid;
    tenant_id: Uuid;
    current_balance: Money;
    currency: Currency;
    status: "active" | "frozen" | "closed";
    updated_at: DateTime;
};
/**
 * One streamed chunk (`ai.reply.delta` data): exactly the input event's fields.
 * Released in `seq` order per `message_id`, each seq once.
 */
export type AiReplyDeltaLive = {
    conversation_id: Uuid;
    message_id: Uuid;
    user_id: Uuid;
    seq: number;
    delta: string;
};
/**
 * The stored `ai_messages` row (`ai.reply.completed` data; `id`, `role`,
 * `created_at` and `final` are additions to the contract's shape). `final: true`
 * says the streamed reply of this `message_id` is over.
 */
export type AiMessageRow = {
    /** The ai_messages id, equal to `message_id`. */
    id: Uuid;
    conversation_id: Uuid;
    message_id: Uuid;
    user_id: Uuid;
    role: "assistant";
    content: string;
    tokens_used: number;
    model: string | null;
    /** The `occurred_at` of the `ai.reply.completed` event. */
    created_at: DateTime;
    final: true;
};
/** Snapshot of `tenant:{t}:calls`. */
export type CallsSnapshot = {
    /** Today (UTC) when the snapshot was read; the day of `stats`. */
    day: string;
    /** voice_call_stats_daily rows of `day`, ordered by agent_id. */
    stats: CallStatsRowWithUpdatedAt[];
    /** Calls not ended yet (no `ended_at`), newest first (by created_at), at most 500. */
    calls_in_progress: CallRowWithUpdatedAt[];
};
/** Snapshot of `tenant:{t}:call:{call_id}`. */
export type CallSnapshot = {
    /** The call's row, or null if no event created it yet. */
    call: CallRowWithUpdatedAt | null;
    /** Stored transcript lines, in seq order (at most 20,000). */
    transcript: TranscriptLine[];
};
/** Snapshot of `tenant:{t}:campaign:{campaign_id}`. */
export type CampaignSnapshot = {
    /** The campaign's campaign_step_stats rows, ordered by step_id, status. */
    stats: CampaignStatsRow[];
};
/**
 * Snapshot of `tenant:{t}:billing`. `wallet` is never null: before the tenant's
 * first billing event it is the wallet-to-be (`wallet_id` and `updated_at`
 * null, balance "0.000000", currency USD, status active).
 */
export type BillingSnapshot = {
    wallet: {
        wallet_id: NullableUuid;
        tenant_id: Uuid;
        current_balance: Money;
        currency: Currency;
        status: "active" | "frozen" | "closed";
        updated_at: NullableDateTime;
    };
};
/**
 * Snapshot of `tenant:{t}:user:{u}:ai`, answered from the gateway node's memory
 * (replies are not stored until completed).
 */
export type AiSnapshot = {
    /**
     * Replies still streaming (at least one delta released, not completed,
     * a delta seen within the last 5 minutes), ordered by message_id.
     */
    replies: {
        conversation_id: Uuid;
        message_id: Uuid;
        user_id: Uuid;
        /** The last delta included in `content`. */
        seq: number;
        /** The seq of the next delta expected (`seq + 1`); deltas from it on follow as messages. */
        next_seq: number;
        /** The reply's text so far (the released deltas concatenated). */
        content: string;
        /** Present (true) only when the text stopped growing at 1 MiB. */
        truncated?: true;
    }[];
};
/** Every live `message` frame, by its `type`. */
export type LiveMessageFrame = FrameCallUpdated | FrameCallStats | FrameCallAnalyzed | FrameCallTranscript | FrameCampaignActivity | FrameCampaignStats | FrameBillingCharged | FrameBillingCredited | FrameBillingRejected | FrameBillingWallet | FrameAiReplyDelta | FrameAiReplyCompleted;
/** The `data` of a live message, by its `type`. */
export type LiveDataByType = {
    "call.updated": CallRow;
    "call.stats": CallStatsRow;
    "call.analyzed": CallAnalysisRow;
    "call.transcript": TranscriptLine;
    "campaign.activity": CampaignActivityRow;
    "campaign.stats": CampaignStatsRow;
    "billing.charged": BillingCharged;
    "billing.credited": BillingCredited;
    "billing.rejected": BillingRejected;
    "billing.wallet": BillingWallet;
    "ai.reply.delta": AiReplyDeltaLive;
    "ai.reply.completed": AiMessageRow;
};
/** A live message type. */
export type LiveMessageType = keyof LiveDataByType;
/** The live message types each kind of channel carries. */
export type MessageTypesByKind = {
    calls: "call.updated" | "call.stats" | "call.analyzed";
    call: "call.transcript";
    campaign: "campaign.activity" | "campaign.stats";
    billing: "billing.charged" | "billing.credited" | "billing.rejected" | "billing.wallet";
    ai: "ai.reply.delta" | "ai.reply.completed";
};
/** The `snapshot` of a `subscribed` frame, by the kind of channel. */
export type SnapshotByKind = {
    calls: CallsSnapshot;
    call: CallSnapshot;
    campaign: CampaignSnapshot;
    billing: BillingSnapshot;
    ai: AiSnapshot;
};
/** A kind of channel: the part of its name after the tenant. */
export type ChannelKind = keyof SnapshotByKind;
