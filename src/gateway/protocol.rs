//! The frames of contract §7: what a client may send, what the hub answers.
//! Pure: parsing never closes a connection, it yields a `bad_request`.

use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::Value;
use uuid::Uuid;

/// A request id as the client sent it (a number or a string), echoed back.
pub type RequestId = Value;

#[derive(Debug, Clone, PartialEq)]
pub enum ClientFrame {
    Subscribe {
        id: RequestId,
        channel: String,
        since: Option<String>,
    },
    Unsubscribe {
        id: RequestId,
        channel: String,
    },
    Ping {
        id: RequestId,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    Forbidden,
    BadRequest,
    UnknownChannel,
    /// Not in the contract's list: an unsubscribe of a channel this
    /// connection is not subscribed to.
    NotSubscribed,
    /// Not in the contract's list: the snapshot (or a capability check)
    /// could not be read from Postgres. The client may retry.
    Internal,
    /// Not in the contract's list: the token's user subscribed faster than
    /// its rate limit (over all its sockets on the node); the message says
    /// when to retry.
    RateLimited,
}

impl ErrorCode {
    /// The code as it appears in the `error` frame (and in metrics labels).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::UnknownChannel => "unknown_channel",
            ErrorCode::NotSubscribed => "not_subscribed",
            ErrorCode::Internal => "internal",
            ErrorCode::RateLimited => "rate_limited",
        }
    }
}

/// A request the hub refuses; it becomes an `error` frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub id: RequestId,
    pub code: ErrorCode,
    pub message: String,
}

impl Refusal {
    pub fn new(id: RequestId, code: ErrorCode, message: impl Into<String>) -> Refusal {
        Refusal {
            id,
            code,
            message: message.into(),
        }
    }

    pub fn to_frame(&self) -> String {
        error(&self.id, self.code, &self.message)
    }
}

/// Parses one text frame. Every failure carries the request id when one
/// could be read, so the client can match the error to its request.
pub fn parse(text: &str) -> Result<ClientFrame, Refusal> {
    let bad = |id: &Value, message: &str| Refusal::new(id.clone(), ErrorCode::BadRequest, message);
    let value: Value =
        serde_json::from_str(text).map_err(|_| bad(&Value::Null, "frame is not valid JSON"))?;
    let Value::Object(obj) = value else {
        return Err(bad(&Value::Null, "frame must be a JSON object"));
    };
    let id = obj.get("id").cloned().unwrap_or(Value::Null);
    if !matches!(id, Value::Number(_) | Value::String(_)) {
        return Err(bad(&Value::Null, "\"id\" (number or string) is required"));
    }
    let op = match obj.get("op") {
        Some(Value::String(op)) => op.as_str(),
        _ => return Err(bad(&id, "\"op\" (string) is required")),
    };
    let string_field = |name: &str, required: bool| -> Result<Option<String>, Refusal> {
        match obj.get(name) {
            Some(Value::String(s)) => Ok(Some(s.clone())),
            None | Some(Value::Null) if !required => Ok(None),
            _ => Err(bad(&id, &format!("\"{name}\" must be a string"))),
        }
    };
    match op {
        "subscribe" => Ok(ClientFrame::Subscribe {
            channel: string_field("channel", true)?.expect("required"),
            since: string_field("since", false)?,
            id,
        }),
        "unsubscribe" => Ok(ClientFrame::Unsubscribe {
            channel: string_field("channel", true)?.expect("required"),
            id,
        }),
        "ping" => Ok(ClientFrame::Ping { id }),
        other => Err(bad(&id, &format!("unknown op {other:?}"))),
    }
}

#[derive(Serialize)]
struct Subscribed<'a, S: ?Sized> {
    op: &'static str,
    id: &'a Value,
    channel: &'a str,
    snapshot: &'a S,
    position: &'a str,
    recovered: bool,
}

/// `snapshot` is a `Value`, or a `RawValue` serialized once for all the
/// subscribes that share its read.
pub fn subscribed<S: Serialize + ?Sized>(
    id: &Value,
    channel: &str,
    snapshot: &S,
    position: &str,
    recovered: bool,
) -> String {
    to_json(&Subscribed {
        op: "subscribed",
        id,
        channel,
        snapshot,
        position,
        recovered,
    })
}

#[derive(Serialize)]
struct Message<'a> {
    op: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    tenant_id: Uuid,
    channel: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    position: &'a str,
    data: &'a RawValue,
}

/// A channel message; `data` is copied from the live record untouched.
/// `id` (the record's, stable across redeliveries) and `tenant_id` are
/// additions to the contract.
pub fn message(
    id: Option<&str>,
    tenant_id: Uuid,
    channel: &str,
    kind: &str,
    position: &str,
    data: &RawValue,
) -> String {
    to_json(&Message {
        op: "message",
        id,
        tenant_id,
        channel,
        kind,
        position,
        data,
    })
}

#[derive(Serialize)]
struct Error<'a> {
    op: &'static str,
    id: &'a Value,
    code: ErrorCode,
    message: &'a str,
}

pub fn error(id: &Value, code: ErrorCode, message: &str) -> String {
    to_json(&Error {
        op: "error",
        id,
        code,
        message,
    })
}

#[derive(Serialize)]
struct Ack<'a> {
    op: &'static str,
    id: &'a Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    channel: Option<&'a str>,
}

pub fn pong(id: &Value) -> String {
    to_json(&Ack {
        op: "pong",
        id,
        channel: None,
    })
}

/// Not in the contract: acknowledges an `unsubscribe`, after which no
/// message of the channel follows on this connection.
pub fn unsubscribed(id: &Value, channel: &str) -> String {
    to_json(&Ack {
        op: "unsubscribed",
        id,
        channel: Some(channel),
    })
}

fn to_json<T: Serialize>(frame: &T) -> String {
    serde_json::to_string(frame).expect("frames are plain JSON")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn refusal(text: &str) -> Refusal {
        parse(text).expect_err(text)
    }

    #[test]
    fn the_three_client_ops_parse() {
        assert_eq!(
            parse(r#"{"op":"subscribe","id":1,"channel":"c","since":"0:5"}"#),
            Ok(ClientFrame::Subscribe {
                id: json!(1),
                channel: "c".into(),
                since: Some("0:5".into())
            })
        );
        assert_eq!(
            parse(r#"{"op":"subscribe","id":"a","channel":"c"}"#),
            Ok(ClientFrame::Subscribe {
                id: json!("a"),
                channel: "c".into(),
                since: None
            })
        );
        assert_eq!(
            parse(r#"{"op":"unsubscribe","id":2,"channel":"c"}"#),
            Ok(ClientFrame::Unsubscribe {
                id: json!(2),
                channel: "c".into()
            })
        );
        assert_eq!(
            parse(r#"{"op":"ping","id":3}"#),
            Ok(ClientFrame::Ping { id: json!(3) })
        );
    }

    #[test]
    fn malformed_frames_are_bad_requests() {
        for text in [
            "",
            "{",
            "null",
            "[1]",
            "\"ping\"",
            r#"{"op":"ping"}"#,
            r#"{"op":"ping","id":null}"#,
        ] {
            let r = refusal(text);
            assert_eq!(r.code, ErrorCode::BadRequest, "{text}");
            assert_eq!(r.id, Value::Null, "{text}");
        }
    }

    #[test]
    fn an_error_keeps_the_request_id_when_it_was_readable() {
        let r = refusal(r#"{"op":"dance","id":7}"#);
        assert_eq!((r.code, r.id), (ErrorCode::BadRequest, json!(7)));
        let r = refusal(r#"{"id":8}"#);
        assert_eq!((r.code, r.id), (ErrorCode::BadRequest, json!(8)));
        let r = refusal(r#"{"op":"subscribe","id":9}"#);
        assert_eq!((r.code, r.id), (ErrorCode::BadRequest, json!(9)));
        let r = refusal(r#"{"op":"subscribe","id":9,"channel":5}"#);
        assert_eq!(r.code, ErrorCode::BadRequest);
        let r = refusal(r#"{"op":"subscribe","id":9,"channel":"c","since":1}"#);
        assert_eq!(r.code, ErrorCode::BadRequest);
    }

    #[test]
    fn server_frames_have_the_contract_shapes() {
        let v = |s: String| serde_json::from_str::<Value>(&s).unwrap();
        assert_eq!(
            v(subscribed(&json!(1), "ch", &json!({"a": 1}), "0:4", true)),
            json!({"op":"subscribed","id":1,"channel":"ch","snapshot":{"a":1},"position":"0:4","recovered":true})
        );
        let data = RawValue::from_string(r#"{"x":[1,2]}"#.into()).unwrap();
        let t = Uuid::nil();
        assert_eq!(
            v(message(Some("4.1"), t, "ch", "call.updated", "1:9", &data)),
            json!({"op":"message","id":"4.1","tenant_id":t,"channel":"ch","type":"call.updated","position":"1:9","data":{"x":[1,2]}})
        );
        assert_eq!(v(message(None, t, "ch", "x", "1:9", &data)).get("id"), None);
        assert_eq!(
            v(error(&json!(2), ErrorCode::UnknownChannel, "no")),
            json!({"op":"error","id":2,"code":"unknown_channel","message":"no"})
        );
        assert_eq!(
            v(Refusal::new(json!(3), ErrorCode::Forbidden, "x").to_frame())["code"],
            json!("forbidden")
        );
        assert_eq!(
            v(error(&json!(1), ErrorCode::NotSubscribed, "x"))["code"],
            "not_subscribed"
        );
        assert_eq!(
            v(error(&json!(1), ErrorCode::Internal, "x"))["code"],
            "internal"
        );
        assert_eq!(v(pong(&json!(3))), json!({"op":"pong","id":3}));
        assert_eq!(
            v(unsubscribed(&json!(4), "ch")),
            json!({"op":"unsubscribed","id":4,"channel":"ch"})
        );
    }
}
