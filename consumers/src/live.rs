//! What the pipelines publish on `lad.live.v1`: one [`LiveUpdate`] per channel
//! message, and the channel names of contract §7 (formatted here, parsed by
//! the gateway with the same type so the two cannot drift).

use serde::Serialize;
use serde_json::Value;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use uuid::Uuid;

/// A message for one channel, written to the outbox inside the transaction
/// that committed what it describes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LiveUpdate {
    pub tenant_id: Uuid,
    pub channel: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub data: Value,
}

impl LiveUpdate {
    pub fn new(channel: Channel, kind: &'static str, data: Value) -> LiveUpdate {
        LiveUpdate {
            tenant_id: channel.tenant_id(),
            channel: channel.to_string(),
            kind,
            data,
        }
    }
}

/// The gateway of this same process. Ephemeral records (assistant deltas)
/// are handed to it directly as well as published, so a reply streamed to a
/// socket on the node that consumes it skips the round trip through
/// `lad.live.v1`; other nodes still get it from the topic.
pub trait LocalGateway: Send + Sync {
    /// Takes one `lad.live.v1` record value. Must not block: it runs on the
    /// pipeline's task.
    fn deliver(&self, record: &[u8]);
}

/// Where a pipeline hands its ephemeral records in-process, and the name it
/// stamps on them (`origin`) so the same gateway skips its own records when
/// they come back from the topic.
#[derive(Clone)]
pub struct LocalHandoff {
    pub origin: String,
    pub gateway: Arc<dyn LocalGateway>,
}

impl fmt::Debug for LocalHandoff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalHandoff")
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

/// A live channel. Every variant is scoped to one tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channel {
    Calls { tenant_id: Uuid },
    Call { tenant_id: Uuid, call_id: Uuid },
    Campaign { tenant_id: Uuid, campaign_id: Uuid },
    Billing { tenant_id: Uuid },
    UserAi { tenant_id: Uuid, user_id: Uuid },
}

impl Channel {
    pub fn tenant_id(&self) -> Uuid {
        match *self {
            Channel::Calls { tenant_id }
            | Channel::Call { tenant_id, .. }
            | Channel::Campaign { tenant_id, .. }
            | Channel::Billing { tenant_id }
            | Channel::UserAi { tenant_id, .. } => tenant_id,
        }
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Channel::Calls { tenant_id } => write!(f, "tenant:{tenant_id}:calls"),
            Channel::Call { tenant_id, call_id } => write!(f, "tenant:{tenant_id}:call:{call_id}"),
            Channel::Campaign {
                tenant_id,
                campaign_id,
            } => write!(f, "tenant:{tenant_id}:campaign:{campaign_id}"),
            Channel::Billing { tenant_id } => write!(f, "tenant:{tenant_id}:billing"),
            Channel::UserAi { tenant_id, user_id } => {
                write!(f, "tenant:{tenant_id}:user:{user_id}:ai")
            }
        }
    }
}

/// Why a channel name is not one of ours; the gateway answers `unknown_channel`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown channel {0:?}")]
pub struct UnknownChannel(pub String);

impl FromStr for Channel {
    type Err = UnknownChannel;

    fn from_str(s: &str) -> Result<Channel, UnknownChannel> {
        let unknown = || UnknownChannel(s.to_owned());
        let parts: Vec<&str> = s.split(':').collect();
        let id = |p: &str| Uuid::parse_str(p).map_err(|_| unknown());
        // Only the canonical (hyphenated, lower-case) spelling is accepted, so
        // one channel has exactly one name in the registry.
        let canonical = |p: &str, u: Uuid| {
            if u.hyphenated().to_string() == p {
                Ok(u)
            } else {
                Err(unknown())
            }
        };
        let uuid = |p: &str| id(p).and_then(|u| canonical(p, u));
        match parts.as_slice() {
            ["tenant", t, "calls"] => Ok(Channel::Calls {
                tenant_id: uuid(t)?,
            }),
            ["tenant", t, "billing"] => Ok(Channel::Billing {
                tenant_id: uuid(t)?,
            }),
            ["tenant", t, "call", c] => Ok(Channel::Call {
                tenant_id: uuid(t)?,
                call_id: uuid(c)?,
            }),
            ["tenant", t, "campaign", c] => Ok(Channel::Campaign {
                tenant_id: uuid(t)?,
                campaign_id: uuid(c)?,
            }),
            ["tenant", t, "user", u, "ai"] => Ok(Channel::UserAi {
                tenant_id: uuid(t)?,
                user_id: uuid(u)?,
            }),
            _ => Err(unknown()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_channel_round_trips_through_its_name() {
        let t = Uuid::new_v4();
        let x = Uuid::new_v4();
        for ch in [
            Channel::Calls { tenant_id: t },
            Channel::Call {
                tenant_id: t,
                call_id: x,
            },
            Channel::Campaign {
                tenant_id: t,
                campaign_id: x,
            },
            Channel::Billing { tenant_id: t },
            Channel::UserAi {
                tenant_id: t,
                user_id: x,
            },
        ] {
            assert_eq!(ch.to_string().parse::<Channel>().unwrap(), ch);
            assert_eq!(ch.tenant_id(), t);
        }
    }

    #[test]
    fn malformed_or_non_canonical_names_are_unknown() {
        let t = Uuid::new_v4();
        for bad in [
            "".to_owned(),
            "tenant".to_owned(),
            format!("tenant:{t}:nope"),
            format!("tenant:{t}:calls:extra"),
            format!("tenant:{}:calls", t.simple()),
            format!("tenant:{}:calls", t.to_string().to_uppercase()),
            format!("tenant:{t}:user:not-a-uuid:ai"),
            format!("org:{t}:calls"),
        ] {
            assert!(bad.parse::<Channel>().is_err(), "{bad} accepted");
        }
    }
}
