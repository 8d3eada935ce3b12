//! Who may subscribe to which channel (contract §7). The decision is pure;
//! only the `user_capabilities` look-up, needed for billing when the token
//! does not settle it, touches Postgres.

use crate::auth::{Claims, Role, BILLING_VIEW};
use lad_consumers::live::Channel;
use sqlx::PgPool;
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Deny(&'static str),
    /// Allowed only if the user holds this capability in the tenant.
    NeedsCapability(&'static str),
}

pub fn decide(claims: &Claims, channel: &Channel) -> Decision {
    if channel.tenant_id() != claims.tenant_id {
        return Decision::Deny("the channel belongs to another tenant");
    }
    match channel {
        Channel::Calls { .. } | Channel::Call { .. } | Channel::Campaign { .. } => Decision::Allow,
        Channel::Billing { .. } => {
            if matches!(claims.role, Role::Owner | Role::Admin) || claims.has_cap(BILLING_VIEW) {
                Decision::Allow
            } else {
                Decision::NeedsCapability(BILLING_VIEW)
            }
        }
        Channel::UserAi { user_id, .. } => {
            if *user_id == claims.sub {
                Decision::Allow
            } else {
                Decision::Deny("only its user may subscribe to an assistant channel")
            }
        }
    }
}

/// A live (not deleted, not expired) capability grant.
pub async fn has_capability(
    pool: &PgPool,
    tenant_id: Uuid,
    user_id: Uuid,
    capability: &str,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS (
             SELECT 1 FROM user_capabilities
             WHERE tenant_id = $1 AND user_id = $2 AND capability_key = $3
               AND deleted_at IS NULL
               AND (expires_at IS NULL OR expires_at > now()))",
    )
    .bind(tenant_id)
    .bind(user_id)
    .bind(capability)
    .fetch_one(pool)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(role: Role, caps: &[&str]) -> Claims {
        Claims {
            sub: Uuid::new_v4(),
            tenant_id: Uuid::new_v4(),
            role,
            exp: i64::MAX,
            caps: caps.iter().map(|c| (*c).to_owned()).collect(),
        }
    }

    #[test]
    fn another_tenants_channel_is_forbidden_whatever_the_role() {
        let other = Uuid::new_v4();
        for role in [Role::Owner, Role::Admin, Role::Member, Role::Viewer] {
            let c = claims(role, &[BILLING_VIEW]);
            for ch in [
                Channel::Calls { tenant_id: other },
                Channel::Call {
                    tenant_id: other,
                    call_id: Uuid::new_v4(),
                },
                Channel::Campaign {
                    tenant_id: other,
                    campaign_id: Uuid::new_v4(),
                },
                Channel::Billing { tenant_id: other },
                Channel::UserAi {
                    tenant_id: other,
                    user_id: c.sub,
                },
            ] {
                assert!(matches!(decide(&c, &ch), Decision::Deny(_)), "{role} {ch}");
            }
        }
    }

    #[test]
    fn every_role_sees_calls_and_campaigns() {
        for role in [Role::Owner, Role::Admin, Role::Member, Role::Viewer] {
            let c = claims(role, &[]);
            let t = c.tenant_id;
            assert_eq!(
                decide(&c, &Channel::Calls { tenant_id: t }),
                Decision::Allow
            );
            let call = Channel::Call {
                tenant_id: t,
                call_id: Uuid::new_v4(),
            };
            assert_eq!(decide(&c, &call), Decision::Allow);
            let campaign = Channel::Campaign {
                tenant_id: t,
                campaign_id: Uuid::new_v4(),
            };
            assert_eq!(decide(&c, &campaign), Decision::Allow);
        }
    }

    #[test]
    fn billing_needs_owner_admin_or_the_capability() {
        for (role, caps, want) in [
            (Role::Owner, &[][..], Decision::Allow),
            (Role::Admin, &[][..], Decision::Allow),
            (Role::Member, &[BILLING_VIEW][..], Decision::Allow),
            (Role::Viewer, &["other", BILLING_VIEW][..], Decision::Allow),
            (
                Role::Member,
                &[][..],
                Decision::NeedsCapability(BILLING_VIEW),
            ),
            (
                Role::Viewer,
                &["billing.edit"][..],
                Decision::NeedsCapability(BILLING_VIEW),
            ),
        ] {
            let c = claims(role, caps);
            assert_eq!(
                decide(
                    &c,
                    &Channel::Billing {
                        tenant_id: c.tenant_id
                    }
                ),
                want,
                "{role} {caps:?}"
            );
        }
    }

    #[test]
    fn an_assistant_channel_is_its_users_alone() {
        let c = claims(Role::Owner, &[]);
        let own = Channel::UserAi {
            tenant_id: c.tenant_id,
            user_id: c.sub,
        };
        assert_eq!(decide(&c, &own), Decision::Allow);
        let other = Channel::UserAi {
            tenant_id: c.tenant_id,
            user_id: Uuid::new_v4(),
        };
        assert!(matches!(decide(&c, &other), Decision::Deny(_)));
    }
}
