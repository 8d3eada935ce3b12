//! `lad-hub watch`: subscribe to channels and print every frame, one JSON per line.

use crate::config::WatchArgs;
use anyhow::Context;
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

pub async fn run(args: WatchArgs) -> anyhow::Result<()> {
    let url = format!("{}?token={}", args.url, args.token);
    let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .with_context(|| format!("connecting to {}", args.url))?;
    for (i, channel) in args.channels.iter().enumerate() {
        let frame = json!({"op": "subscribe", "id": i + 1, "channel": channel});
        ws.send(Message::text(frame.to_string())).await?;
    }
    while let Some(msg) = ws.next().await {
        match msg? {
            Message::Text(t) => println!("{t}"),
            Message::Close(frame) => {
                println!(
                    "{}",
                    json!({"closed": frame.map(|f| (u16::from(f.code), f.reason.to_string()))})
                );
                break;
            }
            _ => {}
        }
    }
    Ok(())
}
