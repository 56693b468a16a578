use std::process::ExitCode;

use overseer::config::Config;
use overseer::{Application, telemetry};
use secrecy::ExposeSecret;

/// Exit code for a configuration error (sysexits' EX_CONFIG).
const EXIT_CONFIG: u8 = 78;

#[actix_web::main]
#[allow(
    clippy::print_stderr,
    reason = "before logging exists, stderr is the only channel"
)]
async fn main() -> ExitCode {
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(err) => {
            eprintln!("overseer: {err}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let telemetry = match telemetry::init(&config.log, std::io::stdout) {
        Ok(telemetry) => telemetry,
        Err(err) => {
            eprintln!("overseer: {err}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if config.admin_token.generated {
        // Shown once, on the terminal, never through the log pipeline.
        eprintln!(
            "overseer: no ADMIN_TOKEN set; generated one for this development run: {}",
            config.admin_token.token.expose_secret()
        );
    }
    config.log_effective();

    let code = match Application::build(config).await {
        Ok(app) => match app.run_until_stopped().await {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                tracing::error!(critical = true, error = %err, "server failed");
                ExitCode::FAILURE
            }
        },
        Err(err) => {
            tracing::error!(critical = true, error = %err, "start-up failed");
            ExitCode::FAILURE
        }
    };
    // Exports what is still buffered (the "stopped" line among it).
    telemetry.shutdown();
    code
}
