use clap::Parser;
use lad_hub::config::{Cli, Command, DeadLetterCommand, OffsetsCommand};
use lad_hub::{auth, dead_letters, demo, http, offset_reset, startup, watch};
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,rdkafka=warn,sqlx=warn".into());
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if cli.log_format == "json" {
        // One JSON object per line with the same fields as the text format
        // (timestamp, level, target, message, span fields), flattened so
        // shippers index `fields.topic` as `topic`.
        logs.json()
            .flatten_event(true)
            .with_current_span(true)
            .init();
    } else {
        logs.init();
    }
    match cli.command {
        Command::Serve(args) => {
            let hub = startup::start(*args).await?;
            let stop = hub.shutdown.clone();
            tokio::spawn(async move {
                wait_for_signal().await;
                tracing::info!("shutting down: finishing batches, closing sockets");
                stop.cancel();
            });
            hub.wait().await
        }
        Command::Migrate(db) => {
            startup::migrate(&db).await?;
            tracing::info!("migrations applied");
            Ok(())
        }
        Command::Demo(args) => {
            let stop = CancellationToken::new();
            let s = stop.clone();
            tokio::spawn(async move {
                wait_for_signal().await;
                s.cancel();
            });
            demo::run(args, stop).await
        }
        Command::Token(args) => {
            if args.print_tenant {
                println!("{}", args.tenant);
                return Ok(());
            }
            anyhow::ensure!(
                !args.jwt_secret.is_empty(),
                "set LAD_JWT_SECRET or --jwt-secret"
            );
            let claims = auth::Claims {
                sub: args.user,
                tenant_id: args.tenant,
                role: args.role.parse().map_err(anyhow::Error::msg)?,
                exp: auth::unix_now() + args.ttl,
                caps: args.caps,
            };
            println!("{}", auth::mint(&args.jwt_secret, &claims));
            Ok(())
        }
        Command::Watch(args) => watch::run(args).await,
        Command::Health(args) => {
            if http::health(&args).await {
                Ok(())
            } else {
                eprintln!("lad-hub at {} is not ready", args.http_addr);
                std::process::exit(1)
            }
        }
        Command::DeadLetters(DeadLetterCommand::List(args)) => dead_letters::list(args).await,
        Command::DeadLetters(DeadLetterCommand::Replay(args)) => dead_letters::replay(args).await,
        Command::Offsets(OffsetsCommand::Reset(args)) => offset_reset::reset(args).await,
    }
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
