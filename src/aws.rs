//! What every AWS client in ferry shares: how the SDK configuration is loaded, and how
//! ferry's synchronous code runs the SDK's futures.
//!
//! - Configuration: the standard chain (environment, shared config and credentials files,
//!   SSO, credential processes, container and instance metadata), with the region taken from
//!   ferry's own files when they name one. `AWS_ENDPOINT_URL` (and the per-service
//!   `AWS_ENDPOINT_URL_<SERVICE>`) are honoured by the SDK itself; when an endpoint is set, S3
//!   clients use path-style addressing, because local emulators and most S3-compatible
//!   servers do not resolve `bucket.host` names.
//! - Errors: [`error_text`] turns any SDK error into the AWS error code or the cause and what
//!   to do, in a line; the SDK's full chain only with `ferry -v` or `FERRY_LOG=debug`.
//! - Futures: [`block_on`] runs them on one process-wide tokio runtime. Callers may be plain
//!   threads or may themselves run inside another tokio runtime (where blocking on a runtime
//!   panics), so in that case the future is driven from a scoped helper thread.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::provider::error::CredentialsError;
use aws_sdk_s3::config::{Credentials, SharedCredentialsProvider};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

/// Where and as whom to reach AWS. Everything left `None` comes from the standard chain.
#[derive(Debug, Clone, Default)]
pub struct AwsSettings {
    /// The region, when ferry's files name one (`[state] region`, `[runtime] region`).
    pub region: Option<String>,
    /// An endpoint for every service (tests point this at the emulator); otherwise
    /// `AWS_ENDPOINT_URL` or the SDK's default.
    pub endpoint_url: Option<String>,
    /// Fixed credentials instead of the chain (tests).
    pub credentials: Option<Credentials>,
}

/// Load the SDK configuration for `settings`. Credentials are resolved lazily, on the first
/// request, so this fails on nothing and is cheap.
pub async fn load_config(settings: &AwsSettings) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest()).timeout_config(
        // The SDK sets no overall timeout by default: a black-holed network would hang a
        // deploy forever. Per attempt, so the standard retries still get their chance.
        TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(10))
            .operation_attempt_timeout(Duration::from_secs(60))
            .build(),
    );
    if let Some(region) = &settings.region {
        loader = loader.region(Region::new(region.clone()));
    }
    if let Some(url) = &settings.endpoint_url {
        loader = loader.endpoint_url(url);
    }
    if let Some(credentials) = &settings.credentials {
        loader = loader.credentials_provider(SharedCredentialsProvider::new(credentials.clone()));
    }
    loader.load().await
}

/// Whether requests go to an endpoint other than AWS's own (an emulator, a compatible
/// server): set in the configuration or the environment.
pub fn has_custom_endpoint(config: &SdkConfig, service_env: &str) -> bool {
    config.endpoint_url().is_some()
        || [String::from("AWS_ENDPOINT_URL"), format!("AWS_ENDPOINT_URL_{service_env}")]
            .iter()
            .any(|var| std::env::var_os(var).is_some_and(|v| !v.is_empty()))
}

/// An S3 client for `config`: path-style addressing when the endpoint is not AWS's.
pub fn s3_client(config: &SdkConfig) -> aws_sdk_s3::Client {
    let s3_config =
        aws_sdk_s3::config::Builder::from(config).force_path_style(has_custom_endpoint(config, "S3")).build();
    aws_sdk_s3::Client::from_conf(s3_config)
}

/// A CloudWatch (metrics and alarms) client for `config`.
pub fn cloudwatch_client(config: &SdkConfig) -> aws_sdk_cloudwatch::Client {
    aws_sdk_cloudwatch::Client::new(config)
}

/// An Elastic Load Balancing (v2) client for `config`.
pub fn elbv2_client(config: &SdkConfig) -> aws_sdk_elasticloadbalancingv2::Client {
    aws_sdk_elasticloadbalancingv2::Client::new(config)
}

/// An Application Auto Scaling client for `config` (autoscaled ECS services).
pub fn autoscaling_client(config: &SdkConfig) -> aws_sdk_applicationautoscaling::Client {
    aws_sdk_applicationautoscaling::Client::new(config)
}

/// Whether AWS errors carry the SDK's whole error chain: set by `ferry -v`, or
/// `FERRY_LOG=debug` (or `trace`) in the environment. A process-wide switch because the
/// errors become text deep inside the stores and runtimes, far from the command line.
static FULL_ERRORS: AtomicBool = AtomicBool::new(false);

/// Show the SDK's whole error chain with every AWS error (`ferry -v`).
pub fn show_full_errors(on: bool) {
    FULL_ERRORS.store(on, Ordering::Relaxed);
}

fn full_errors() -> bool {
    FULL_ERRORS.load(Ordering::Relaxed)
        || std::env::var("FERRY_LOG").is_ok_and(|v| v.eq_ignore_ascii_case("debug") || v.eq_ignore_ascii_case("trace"))
}

/// What to do when AWS cannot be reached.
const NETWORK_HINT: &str = "check the network, the region, and AWS_ENDPOINT_URL if one is set";
/// What to do when no credentials were found.
const CREDENTIALS_HINT: &str = "set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or log in with \
                                `aws sso login`; in CI, configure credentials first (e.g. OIDC)";

/// An AWS SDK error as a few words for a person: the AWS error code and message when AWS
/// answered, else the cause (no credentials, an endpoint that cannot be reached, a timeout),
/// then what to do. The caller puts what ferry tried in front. The SDK's own rendering of
/// the chain (hundreds of characters of debug output) follows only with `ferry -v` or
/// `FERRY_LOG=debug`.
pub fn error_text<E, R>(e: &SdkError<E, R>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    let (cause, hint) = summarise(e);
    let mut text = match hint {
        Some(hint) => format!("{cause} — {hint}"),
        None => cause,
    };
    if full_errors() {
        text.push_str(&format!("\n  SDK error: {}", DisplayErrorContext(e)));
    }
    text
}

fn summarise<E, R>(e: &SdkError<E, R>) -> (String, Option<String>)
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    if let Some(code) = e.code() {
        let cause = match e.message().map(|m| m.trim().trim_end_matches('.')).filter(|m| !m.is_empty()) {
            Some(message) => format!("{code}: {message}"),
            None => code.to_string(),
        };
        return (cause, code_hint(code).map(str::to_string));
    }
    if let Some(credentials) = chain(e).find_map(|s| s.downcast_ref::<CredentialsError>()) {
        let (cause, hint) = match credentials {
            CredentialsError::CredentialsNotLoaded(_) => ("no AWS credentials found".to_string(), CREDENTIALS_HINT),
            CredentialsError::ProviderTimedOut(_) => {
                ("loading AWS credentials timed out".to_string(), "check the network and the credentials settings")
            }
            CredentialsError::InvalidConfiguration(_) => (
                format!("the AWS credentials settings are invalid: {}", innermost(credentials)),
                "check AWS_PROFILE and ~/.aws/config",
            ),
            _ => (format!("cannot load AWS credentials: {}", innermost(credentials)), CREDENTIALS_HINT),
        };
        return (cause, Some(hint.to_string()));
    }
    match e {
        SdkError::TimeoutError(_) => ("no answer from AWS in time".to_string(), Some(NETWORK_HINT.to_string())),
        SdkError::DispatchFailure(d) if d.is_timeout() => {
            ("no answer from AWS in time".to_string(), Some(NETWORK_HINT.to_string()))
        }
        SdkError::DispatchFailure(d) if d.is_io() => {
            (format!("cannot reach AWS: {}", innermost(e)), Some(NETWORK_HINT.to_string()))
        }
        SdkError::DispatchFailure(_) => (format!("the request failed: {}", innermost(e)), None),
        SdkError::ConstructionFailure(_) => (format!("the request could not be made: {}", innermost(e)), None),
        SdkError::ResponseError(_) => (format!("AWS's answer could not be read: {}", innermost(e)), None),
        // A service error without a code: its HTTP status is all there is.
        _ => (format!("AWS answered with an error: {}", innermost(e)), None),
    }
}

/// What to do about the error codes a user can fix themselves.
fn code_hint(code: &str) -> Option<&'static str> {
    Some(match code {
        "AccessDenied" | "AccessDeniedException" | "UnauthorizedOperation" | "AuthorizationError" => {
            "the credentials in use may not do this: check their IAM policy (`aws sts get-caller-identity` names them)"
        }
        "InvalidAccessKeyId"
        | "SignatureDoesNotMatch"
        | "UnrecognizedClientException"
        | "InvalidClientTokenId"
        | "InvalidSignatureException" => "the credentials are not valid: check AWS_PROFILE or AWS_ACCESS_KEY_ID",
        "ExpiredToken" | "ExpiredTokenException" | "RequestExpired" | "TokenRefreshRequired" => {
            "the session expired: log in again (`aws sso login`) or refresh the credentials"
        }
        "NoSuchBucket" => "create the bucket, or fix `bucket` under [state] in ferry.toml",
        "ThrottlingException" | "Throttling" | "TooManyRequestsException" | "SlowDown" => {
            "AWS is throttling requests: try again in a minute"
        }
        _ => return None,
    })
}

/// The error and its sources, outermost first.
fn chain<'a>(e: &'a (dyn std::error::Error + 'static)) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(e), |e| e.source())
}

/// The innermost cause's own words (`Connection refused (os error 111)`), which say more
/// than the SDK's wrappers around it.
fn innermost(e: &(dyn std::error::Error + 'static)) -> String {
    chain(e).last().map(ToString::to_string).unwrap_or_default()
}

/// The runtime every AWS future runs on, created on first use and kept for the process.
/// Two workers: ferry's AWS work is waiting on the network, not computing.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("ferry-aws")
            .enable_all()
            .build()
            .expect("cannot start the tokio runtime for AWS requests")
    })
}

/// Run `future` to completion from synchronous code, on the shared AWS runtime.
///
/// Safe to call from any thread, including a worker of another tokio runtime: there,
/// blocking in place would panic ("cannot start a runtime from within a runtime"), so the
/// future is driven from a scoped helper thread while this one waits. (That blocks the
/// calling worker for the duration, which is what a synchronous call means.)
pub fn block_on<F>(future: F) -> F::Output
where
    F: Future + Send,
    F::Output: Send,
{
    if tokio::runtime::Handle::try_current().is_ok() {
        std::thread::scope(|scope| {
            scope.spawn(|| runtime().block_on(future)).join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    } else {
        runtime().block_on(future)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_on_works_inside_and_outside_a_runtime() {
        assert_eq!(block_on(async { 1 + 1 }), 2);
        let outer = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let inside = outer.block_on(async {
            block_on(async {
                tokio::time::sleep(Duration::from_millis(1)).await;
                3
            })
        });
        assert_eq!(inside, 3);
    }

    use aws_sdk_s3::error::{ConnectorError, ErrorMetadata};
    use aws_sdk_s3::operation::get_object::GetObjectError;

    #[test]
    fn an_error_aws_answered_is_its_code_message_and_what_to_do() {
        let denied = ErrorMetadata::builder().code("AccessDenied").message("Access Denied.").build();
        let e: SdkError<GetObjectError, ()> = SdkError::service_error(GetObjectError::generic(denied), ());
        assert_eq!(
            error_text(&e),
            "AccessDenied: Access Denied — the credentials in use may not do this: check their IAM policy \
             (`aws sts get-caller-identity` names them)"
        );
        let odd = ErrorMetadata::builder().code("SomethingNew").build();
        let e: SdkError<GetObjectError, ()> = SdkError::service_error(GetObjectError::generic(odd), ());
        assert_eq!(error_text(&e), "SomethingNew");
    }

    #[test]
    fn a_request_that_never_got_an_answer_says_why() {
        let missing = CredentialsError::not_loaded("no providers in chain provided credentials");
        let e: SdkError<GetObjectError, ()> =
            SdkError::dispatch_failure(ConnectorError::other(Box::new(missing), None));
        assert_eq!(error_text(&e), format!("no AWS credentials found — {CREDENTIALS_HINT}"));

        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "Connection refused (os error 111)");
        let e: SdkError<GetObjectError, ()> = SdkError::dispatch_failure(ConnectorError::io(Box::new(refused)));
        assert_eq!(error_text(&e), format!("cannot reach AWS: Connection refused (os error 111) — {NETWORK_HINT}"));
    }

    #[test]
    fn an_explicit_endpoint_selects_path_style() {
        let config = block_on(load_config(&AwsSettings {
            region: Some("eu-central-1".into()),
            endpoint_url: Some("http://127.0.0.1:1".into()),
            credentials: Some(Credentials::new("a", "b", None, None, "test")),
        }));
        assert!(has_custom_endpoint(&config, "S3"));
        assert_eq!(config.region().map(|r| r.as_ref()), Some("eu-central-1"));
    }
}
