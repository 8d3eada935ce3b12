//! `lad-hub watch`: subscribe to channels and print every frame, one JSON
//! per line, and stay subscribed: after a close or a lost connection it
//! reconnects with backoff and resubscribes each channel with the last
//! position it printed (`since`), so it prints what it missed, each message
//! once. The rules any client follows (README, "Reconnecting").

use crate::config::WatchArgs;
use futures_util::{SinkExt, StreamExt};
use rand::Rng;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;
use tokio_tungstenite::tungstenite::{self, Message};

const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// Message ids remembered to drop repeats (a republished outbox row).
const IDS_REMEMBERED: usize = 16_384;

/// How one connection ended.
#[derive(Debug)]
enum Ended {
    /// The hub closed with this code and reason.
    Closed(u16, String),
    /// The connection broke, or never opened.
    Lost(String),
    /// The hub refused the token: retrying cannot help.
    Refused(String),
}

/// What a watcher carries from one connection to the next.
#[derive(Default)]
struct Resume {
    /// Channel → the position of the last message printed.
    positions: HashMap<String, String>,
    seen: RecentIds,
}

pub async fn run(args: WatchArgs) -> anyhow::Result<()> {
    let mut resume = Resume::default();
    let mut backoff = FIRST_BACKOFF;
    loop {
        let (ended, was_live) = connect_once(&args, &mut resume).await;
        let (code, why) = match &ended {
            Ended::Closed(code, reason) => (Some(*code), reason.clone()),
            Ended::Lost(e) | Ended::Refused(e) => (None, e.clone()),
        };
        println!("{}", json!({"closed": {"code": code, "reason": why}}));
        if let Ended::Refused(e) = ended {
            anyhow::bail!("the hub refused the token: {e}");
        }
        if code == Some(4001) {
            anyhow::bail!("the token expired: start watch again with a new token");
        }
        if args.no_reconnect {
            return Ok(());
        }
        if was_live {
            backoff = FIRST_BACKOFF;
        }
        let wait = jittered(backoff);
        eprintln!("lad-hub watch: reconnecting in {} ms", wait.as_millis());
        tokio::time::sleep(wait).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// One connection: subscribe (with `since` where known), print until it
/// ends. Also says whether it got as far as a subscription.
async fn connect_once(args: &WatchArgs, resume: &mut Resume) -> (Ended, bool) {
    let url = format!("{}?token={}", args.url, args.token);
    let mut ws = match tokio_tungstenite::connect_async(url.as_str()).await {
        Ok((ws, _)) => ws,
        Err(tungstenite::Error::Http(resp)) if resp.status().as_u16() == 401 => {
            return (Ended::Refused(format!("HTTP {}", resp.status())), false)
        }
        Err(e) => {
            return (
                Ended::Lost(format!("connecting to {}: {e}", args.url)),
                false,
            )
        }
    };
    for (i, channel) in args.channels.iter().enumerate() {
        let mut frame = json!({"op": "subscribe", "id": i + 1, "channel": channel});
        if let Some(since) = resume.positions.get(channel) {
            frame["since"] = since.as_str().into();
        }
        if let Err(e) = ws.send(Message::text(frame.to_string())).await {
            return (Ended::Lost(e.to_string()), false);
        }
    }
    let mut live = false;
    while let Some(msg) = ws.next().await {
        match msg {
            Ok(Message::Text(t)) => {
                live = true;
                if let Some(line) = resume.take(t.as_str()) {
                    println!("{line}");
                }
            }
            Ok(Message::Close(frame)) => {
                let (code, reason) = frame.map_or((1005, String::new()), |f| {
                    (u16::from(f.code), f.reason.to_string())
                });
                return (Ended::Closed(code, reason), live);
            }
            Ok(_) => {}
            Err(e) => return (Ended::Lost(e.to_string()), live),
        }
    }
    (
        Ended::Lost("connection ended without a close frame".into()),
        live,
    )
}

impl Resume {
    /// The line to print for a frame, or `None` for a repeated message;
    /// notes the position of each message.
    fn take<'t>(&mut self, text: &'t str) -> Option<&'t str> {
        let Ok(frame) = serde_json::from_str::<Value>(text) else {
            return Some(text);
        };
        let channel = frame["channel"].as_str();
        match (frame["op"].as_str(), channel) {
            (Some("message"), Some(channel)) => {
                if let Some(id) = frame["id"].as_str() {
                    if !self.seen.insert(id) {
                        return None;
                    }
                }
                if let Some(position) = frame["position"].as_str() {
                    self.positions.insert(channel.into(), position.into());
                }
            }
            (Some("subscribed"), Some(channel)) => {
                if let Some(position) = frame["position"].as_str() {
                    self.positions.insert(channel.into(), position.into());
                }
            }
            _ => {}
        }
        Some(text)
    }
}

/// A bounded set of recent ids.
#[derive(Default)]
struct RecentIds {
    set: HashSet<String>,
    order: VecDeque<String>,
}

impl RecentIds {
    /// True the first time.
    fn insert(&mut self, id: &str) -> bool {
        if self.set.contains(id) {
            return false;
        }
        self.set.insert(id.to_owned());
        self.order.push_back(id.to_owned());
        if self.order.len() > IDS_REMEMBERED {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        true
    }
}

/// Between half and all of `base`, so clients cut together do not all
/// come back at once.
fn jittered(base: Duration) -> Duration {
    base.mul_f64(rand::thread_rng().gen_range(0.5..=1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_kept_per_channel_and_repeats_dropped() {
        let mut r = Resume::default();
        let sub = r#"{"op":"subscribed","id":1,"channel":"c","position":"0:4","recovered":false,"snapshot":{}}"#;
        assert_eq!(r.take(sub), Some(sub));
        assert_eq!(r.positions["c"], "0:4");
        let m =
            r#"{"op":"message","id":"9.0","channel":"c","type":"t","position":"0:7","data":{}}"#;
        assert_eq!(r.take(m), Some(m));
        assert_eq!(r.take(m), None, "a repeat by id is not printed");
        assert_eq!(r.positions["c"], "0:7");
        assert_eq!(r.take("not json"), Some("not json"));
    }

    #[test]
    fn backoff_is_jittered_below_its_base() {
        for _ in 0..100 {
            let d = jittered(Duration::from_secs(2));
            assert!(d >= Duration::from_secs(1) && d <= Duration::from_secs(2));
        }
    }

    #[test]
    fn recent_ids_forget_the_oldest() {
        let mut ids = RecentIds::default();
        for i in 0..=IDS_REMEMBERED {
            assert!(ids.insert(&i.to_string()));
        }
        assert!(ids.insert("0"), "the oldest was forgotten");
        assert!(!ids.insert(&IDS_REMEMBERED.to_string()));
    }
}
