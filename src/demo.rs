//! Demo traffic and the event builders the tests and benchmarks share: what
//! LAD's services would produce, as envelopes of contract §2.

use crate::config::DemoArgs;
use anyhow::Context;
use chrono::{DateTime, Utc};
use rand::{Rng, SeedableRng};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub const DEMO_TENANT: &str = "6c1d9e0a-0b1d-4f3a-8f55-2f6c1d9e0a77";
pub const DEMO_USER: &str = "3f4a4b8e-7f0c-4c1e-9d55-0c1a8f0e6b11";
/// The campaign the demo's activity belongs to: fixed, so the dashboard can
/// show its funnel without being told an id.
pub const DEMO_CAMPAIGN: &str = "9d55a0c1-8f0e-4b11-a6a4-6c1d9e0a0b1d";

/// One input record: its topic's key and its value.
#[derive(Debug, Clone)]
pub struct Event {
    pub key: String,
    pub value: Value,
}

impl Event {
    pub fn new(
        key: impl ToString,
        kind: &str,
        tenant: Uuid,
        at: DateTime<Utc>,
        data: Value,
    ) -> Event {
        Event {
            key: key.to_string(),
            value: json!({
                "event_id": Uuid::new_v4(),
                "type": kind,
                "version": 1,
                "tenant_id": tenant,
                "occurred_at": at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                "data": data,
            }),
        }
    }

    pub fn event_id(&self) -> Uuid {
        self.value["event_id"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .expect("built with an id")
    }

    pub fn payload(&self) -> Vec<u8> {
        serde_json::to_vec(&self.value).expect("JSON values serialize")
    }
}

/// A whole call: started, answered (usually), a few transcript lines, ended,
/// analyzed, `step` apart.
pub struct CallScript {
    pub tenant: Uuid,
    pub call_id: Uuid,
    pub agent_id: Uuid,
    pub answered: bool,
    pub status: &'static str,
    pub duration_seconds: i32,
    pub cost: String,
    pub transcript_lines: i32,
}

impl CallScript {
    pub fn random(rng: &mut impl Rng, tenant: Uuid, agents: &[Uuid]) -> CallScript {
        let answered = rng.gen_bool(0.8);
        let status = if answered {
            if rng.gen_bool(0.9) {
                "completed"
            } else {
                "failed"
            }
        } else {
            ["no_answer", "busy", "canceled"][rng.gen_range(0..3)]
        };
        let duration_seconds = if answered { rng.gen_range(10..600) } else { 0 };
        CallScript {
            tenant,
            call_id: Uuid::new_v4(),
            agent_id: agents[rng.gen_range(0..agents.len())],
            answered,
            status,
            duration_seconds,
            // Cents and sub-cents, exactly: duration x 0.0015/s.
            cost: (rust_decimal::Decimal::new(15, 4)
                * rust_decimal::Decimal::from(duration_seconds))
            .normalize()
            .to_string(),
            transcript_lines: if answered { rng.gen_range(0..4) } else { 0 },
        }
    }

    pub fn events(&self, start: DateTime<Utc>, step: chrono::Duration) -> Vec<Event> {
        let (t, c) = (self.tenant, self.call_id);
        let mut at = start;
        let mut next = || {
            let now = at;
            at += step;
            now
        };
        let mut out = vec![Event::new(
            c,
            "call.started",
            t,
            next(),
            json!({"call_id": c, "agent_id": self.agent_id, "direction": "outbound",
                   "from_number": "+15550100", "to_number": "+15550199"}),
        )];
        if self.answered {
            out.push(Event::new(
                c,
                "call.answered",
                t,
                next(),
                json!({"call_id": c}),
            ));
        }
        for seq in 0..self.transcript_lines {
            let speaker = if seq % 2 == 0 { "agent" } else { "lead" };
            out.push(Event::new(
                c,
                "call.transcript",
                t,
                next(),
                json!({"call_id": c, "seq": seq, "speaker": speaker, "text": format!("line {seq}")}),
            ));
        }
        out.push(Event::new(
            c,
            "call.ended",
            t,
            next(),
            json!({"call_id": c, "status": self.status, "duration_seconds": self.duration_seconds,
                   "cost": self.cost, "currency": "USD"}),
        ));
        if self.answered {
            out.push(Event::new(
                c,
                "call.analyzed",
                t,
                next(),
                json!({"call_id": c, "sentiment": "positive", "lead_category": "hot", "summary": "Wants a demo."}),
            ));
        }
        out
    }
}

/// A dialer's burst: `calls` calls of one tenant and agent, all started,
/// then all ended (completed, free): `2 * calls` events.
pub fn call_burst(tenant: Uuid, agent: Uuid, calls: usize) -> Vec<Event> {
    let at = Utc::now();
    let ids: Vec<Uuid> = (0..calls).map(|_| Uuid::new_v4()).collect();
    let started = ids.iter().map(|c| {
        Event::new(
            c,
            "call.started",
            tenant,
            at,
            json!({"call_id": c, "agent_id": agent, "direction": "outbound",
                   "from_number": "+15550100", "to_number": "+15550199"}),
        )
    });
    let ended = ids.iter().map(|c| {
        Event::new(
            c,
            "call.ended",
            tenant,
            at,
            json!({"call_id": c, "status": "completed", "duration_seconds": 42,
                   "cost": "0", "currency": "USD"}),
        )
    });
    started.chain(ended).collect()
}

/// Produces demo traffic for one tenant until `shutdown`: calls that take a
/// few seconds each (so dashboards see them progress), a wallet top-up, now
/// and then a campaign activity and a streamed assistant reply.
pub async fn run(args: DemoArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let kafka = args.kafka.settings().map_err(anyhow::Error::msg)?;
    let producer: FutureProducer = kafka.producer_config().create().context("demo producer")?;
    let t = &args.topics;
    let tenant = args.tenant;
    let user: Uuid = DEMO_USER.parse().expect("valid uuid");
    let agents: Vec<Uuid> = (0..3).map(|_| Uuid::new_v4()).collect();
    let campaign: Uuid = DEMO_CAMPAIGN.parse().expect("valid uuid");
    let mut rng = rand::rngs::StdRng::from_entropy();
    // (due, topic, event) in due order: a call's steps play out over seconds.
    let mut due: VecDeque<(tokio::time::Instant, String, Event)> = VecDeque::new();
    let send = |topic: &str, e: &Event| {
        let payload = e.payload();
        let record = FutureRecord::to(topic).key(&e.key).payload(&payload);
        producer.send_result(record).map(drop).map_err(|(e, _)| e)
    };
    send(
        &t.topic_billing,
        &Event::new(
            tenant,
            "billing.credit",
            tenant,
            Utc::now(),
            json!({"idempotency_key": format!("demo-topup-{}", Utc::now().timestamp()), "amount": "100.00", "reason": "demo top-up"}),
        ),
    )?;
    let interval = Duration::from_secs_f64(1.0 / args.calls_per_second.max(0.01));
    let mut tick = tokio::time::interval(interval);
    let mut started = 0u64;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => {}
        }
        let now = tokio::time::Instant::now();
        if args.calls.is_none_or(|n| started < n) {
            started += 1;
            let script = CallScript::random(&mut rng, tenant, &agents);
            let step = chrono::Duration::milliseconds(rng.gen_range(500..2500));
            for (i, e) in script.events(Utc::now(), step).into_iter().enumerate() {
                let at = now + step.to_std().expect("positive") * i as u32;
                due.push_back((at, t.topic_voice.clone(), e));
            }
            if started.is_multiple_of(10) {
                let lead = Uuid::new_v4();
                let statuses = ["sent", "delivered", "opened", "clicked", "replied"];
                due.push_back((
                    now,
                    t.topic_campaigns.clone(),
                    Event::new(
                        lead,
                        "campaign.activity",
                        tenant,
                        Utc::now(),
                        json!({"campaign_id": campaign, "campaign_lead_id": lead, "lead_id": Uuid::new_v4(),
                               "step_id": agents[0], "step_type": "email",
                               "status": statuses[rng.gen_range(0..statuses.len())]}),
                    ),
                ));
            }
            if started.is_multiple_of(25) {
                due.extend(
                    assistant_reply(
                        tenant,
                        user,
                        "Your ideal customers are B2B SaaS companies with 50 to 500 employees.",
                    )
                    .into_iter()
                    .enumerate()
                    .map(|(i, e)| {
                        (
                            now + Duration::from_millis(33 * i as u64),
                            t.topic_ai.clone(),
                            e,
                        )
                    }),
                );
            }
            due.make_contiguous().sort_by_key(|(at, ..)| *at);
        } else if due.is_empty() {
            break;
        }
        while due.front().is_some_and(|(at, ..)| *at <= now) {
            let (_, topic, e) = due.pop_front().expect("checked");
            if let Err(e) = send(&topic, &e) {
                tracing::warn!(error = %e, "demo event dropped");
            }
        }
    }
    let _ = rdkafka::producer::Producer::flush(&producer, Duration::from_secs(5));
    Ok(())
}

/// A streamed assistant reply: one delta per word, then the completed message.
pub fn assistant_reply(tenant: Uuid, user: Uuid, text: &str) -> Vec<Event> {
    let (conversation, message) = (Uuid::new_v4(), Uuid::new_v4());
    let now = Utc::now();
    let words: Vec<String> = text.split_inclusive(' ').map(str::to_owned).collect();
    let mut out: Vec<Event> = words
        .iter()
        .enumerate()
        .map(|(seq, w)| {
            Event::new(
                conversation,
                "ai.reply.delta",
                tenant,
                now,
                json!({"conversation_id": conversation, "message_id": message, "user_id": user, "seq": seq, "delta": w}),
            )
        })
        .collect();
    out.push(Event::new(
        conversation,
        "ai.reply.completed",
        tenant,
        now,
        json!({"conversation_id": conversation, "message_id": message, "user_id": user,
               "content": text, "tokens_used": words.len(), "model": "demo"}),
    ));
    out
}
