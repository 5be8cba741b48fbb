//! The ECR registry: release digests verified with DescribeImages, tags resolved the same
//! way. Synchronous like every [`Registry`]: each call runs its request on the shared AWS
//! runtime ([`crate::aws::block_on`]).
//!
//! Verifications of one repository share requests: while one DescribeImages is under way,
//! a digest it asks for is answered by it, and other digests asked for meanwhile wait and
//! go together in the next (up to 100 image ids); digests announced with
//! [`Registry::expect`] go in the first. So
//! the verify operations of a commit — announced, then started together, each on its own
//! thread — cost one request per repository rather than one per app, and none waits for a batch to
//! fill. ECR refuses the whole request when one id is missing; such a batch is asked again
//! digest by digest, so each missing one is named.
//!
//! Image names are ECR repository URIs (`123456789012.dkr.ecr.eu-central-1.amazonaws.com/shop/web`):
//! the account becomes the registry id and the path the repository name. A bare name
//! (`shop/web`) means a repository of the caller's own account.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};

use aws_sdk_ecr::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_ecr::types::ImageIdentifier;

use super::{is_repository_name, is_tag, Registry, RegistryError, Result};
use crate::config::Digest;

/// DescribeImages takes at most this many image ids.
const IMAGES_PER_CALL: usize = 100;

/// ECR through one client.
#[derive(Debug, Clone)]
pub struct EcrRegistry {
    client: aws_sdk_ecr::Client,
    verifying: Arc<Verifying>,
}

/// Verifications under way, by repository (see the module doc).
#[derive(Debug, Default)]
struct Verifying {
    queues: Mutex<HashMap<String, Queue>>,
    done: Condvar,
}

/// One repository's verifications.
#[derive(Debug, Default)]
struct Queue {
    /// A DescribeImages for this repository is under way.
    in_flight: bool,
    /// Digests asked for and not yet sent, with how many callers wait for each.
    waiting: HashMap<Digest, usize>,
    /// Answers not yet collected: whether the digest is there (or why ECR could not say),
    /// with how many callers are still to collect it.
    answers: HashMap<Digest, (std::result::Result<bool, String>, usize)>,
    /// Digests of the request under way, with how many callers wait for each: one asking
    /// for such a digest meanwhile waits for that answer instead of queueing another request.
    sent: HashMap<Digest, usize>,
    /// Answers for digests announced with [`Registry::expect`] that no caller waited for
    /// when they came: kept for the callers to come.
    early: HashMap<Digest, std::result::Result<bool, String>>,
}

/// `(registry id, repository name)` of an image name.
pub fn parse_repository(image: &str) -> Result<(Option<String>, String)> {
    let (registry, name) = match image.split_once('/') {
        Some((host, rest)) if host.contains('.') || host.contains(':') => {
            let account = host.split_once(".dkr.ecr.").map(|(a, _)| a.to_string());
            match account {
                Some(a) if !a.is_empty() && a.bytes().all(|b| b.is_ascii_digit()) => (Some(a), rest),
                _ => return Err(RegistryError::InvalidRepository(image.to_string())),
            }
        }
        _ => (None, image),
    };
    if !is_repository_name(name) {
        return Err(RegistryError::InvalidRepository(image.to_string()));
    }
    Ok((registry, name.to_string()))
}

impl EcrRegistry {
    /// The registry reached through `sdk` (region, credentials, endpoint).
    pub fn new(sdk: &aws_config::SdkConfig) -> Self {
        Self::from_client(aws_sdk_ecr::Client::new(sdk))
    }

    /// The registry reached through `client`.
    pub fn from_client(client: aws_sdk_ecr::Client) -> Self {
        EcrRegistry { client, verifying: Arc::default() }
    }

    /// The registry client that pushes and pulls `image` (an ECR repository URI, or a bare
    /// name in the caller's account), authenticated with the basic credentials
    /// `GetAuthorizationToken` gives; and the repository's name in it.
    pub fn push_registry(&self, image: &str) -> Result<(super::OciRegistry, String)> {
        use base64::Engine as _;
        // One token serves every registry the caller may reach: no registry id to pass.
        let (_, name) = parse_repository(image)?;
        let request = self.client.get_authorization_token();
        let out = crate::aws::block_on(request.send()).map_err(|e| remote(image, e))?;
        let data = out
            .authorization_data()
            .first()
            .ok_or_else(|| RegistryError::Remote(format!("ECR gave no authorization token for `{image}`")))?;
        let token = data.authorization_token().unwrap_or_default();
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(token)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|t| t.split_once(':').map(|(u, p)| (u.to_string(), p.to_string())))
            .ok_or_else(|| RegistryError::Remote("ECR gave an authorization token ferry cannot read".into()))?;
        let endpoint = data.proxy_endpoint().unwrap_or_default();
        let host = endpoint.trim_start_matches("https://").trim_start_matches("http://").trim_end_matches('/');
        let url = super::RegistryUrl::parse(host)
            .map_err(|why| RegistryError::Remote(format!("ECR gave the endpoint `{endpoint}`, which {why}")))?;
        let auth = oci_client::secrets::RegistryAuth::Basic(decoded.0, decoded.1);
        Ok((super::OciRegistry::new(url, auth), name))
    }

    /// Whether `repo` holds `digest`, asked together with the digests of `repo` other
    /// threads want to know about meanwhile.
    fn holds(&self, repo: &str, digest: &Digest) -> Result<bool> {
        let v = &self.verifying;
        let mut queues = v.queues.lock().expect("ECR verifications");
        let queue = queues.entry(repo.to_string()).or_default();
        if let Some(answer) = queue.early.get(digest) {
            return answer.clone().map_err(RegistryError::Remote);
        }
        match queue.sent.get_mut(digest) {
            Some(readers) => *readers += 1,
            None => *queue.waiting.entry(digest.clone()).or_default() += 1,
        }
        loop {
            let queue = queues.get_mut(repo).expect("queue of a waiting digest");
            if let Some((answer, readers)) = queue.answers.get_mut(digest) {
                let answer = answer.clone();
                *readers -= 1;
                if *readers == 0 {
                    queue.answers.remove(digest);
                }
                if queue.answers.is_empty() && queue.waiting.is_empty() && queue.early.is_empty() && !queue.in_flight {
                    queues.remove(repo);
                }
                return answer.map_err(RegistryError::Remote);
            }
            if queue.in_flight {
                queues = v.done.wait(queues).expect("ECR verifications");
                continue;
            }
            // Lead: send what waits (the oldest hundred), answer everyone, wake them.
            let batch: Vec<(Digest, usize)> = {
                let mut all: Vec<(Digest, usize)> = queue.waiting.drain().collect();
                all.sort();
                let rest = all.split_off(all.len().min(IMAGES_PER_CALL));
                queue.waiting.extend(rest);
                all
            };
            queue.in_flight = true;
            queue.sent = batch.iter().cloned().collect();
            drop(queues);
            let digests: Vec<Digest> = batch.iter().map(|(d, _)| d.clone()).collect();
            let found = self.find_digests(repo, &digests);
            queues = v.queues.lock().expect("ECR verifications");
            let queue = queues.get_mut(repo).expect("queue in flight");
            queue.in_flight = false;
            for (d, readers) in std::mem::take(&mut queue.sent) {
                let answer = match &found {
                    Ok(found) => Ok(found.contains(&d)),
                    Err(e) => Err(e.to_string()),
                };
                if readers == 0 {
                    queue.early.insert(d, answer);
                } else {
                    queue.answers.insert(d, (answer, readers));
                }
            }
            v.done.notify_all();
        }
    }

    /// Which of `digests` `repo` holds: one DescribeImages, or one per digest when ECR
    /// refuses the batch because one is missing.
    fn find_digests(&self, repo: &str, digests: &[Digest]) -> Result<Vec<Digest>> {
        let (registry_id, name) = parse_repository(repo)?;
        let ids = digests.iter().map(|d| ImageIdentifier::builder().image_digest(d.as_str()).build()).collect();
        let request =
            self.client.describe_images().set_registry_id(registry_id).repository_name(name).set_image_ids(Some(ids));
        match crate::aws::block_on(request.send()) {
            Ok(out) => out
                .image_details()
                .iter()
                .filter_map(|d| d.image_digest())
                .map(|d| d.parse().map_err(|e| RegistryError::Remote(format!("ECR returned {e}"))))
                .collect(),
            Err(e) if e.code() == Some("ImageNotFoundException") && digests.len() > 1 => {
                let mut found = Vec::new();
                for d in digests {
                    found.extend(self.find_digests(repo, std::slice::from_ref(d))?);
                }
                Ok(found)
            }
            Err(e) if matches!(e.code(), Some("ImageNotFoundException" | "RepositoryNotFoundException")) => Ok(vec![]),
            Err(e) => Err(remote(repo, e)),
        }
    }

    /// The digest of the one image `id` names in `repo`; `Ok(None)` when there is none.
    fn describe(&self, repo: &str, id: ImageIdentifier) -> Result<Option<Digest>> {
        let (registry_id, name) = parse_repository(repo)?;
        let request = self.client.describe_images().set_registry_id(registry_id).repository_name(name).image_ids(id);
        match crate::aws::block_on(request.send()) {
            Ok(out) => Ok(out
                .image_details()
                .iter()
                .find_map(|d| d.image_digest())
                .map(|d| d.parse().map_err(|e| RegistryError::Remote(format!("ECR returned {e}"))))
                .transpose()?),
            Err(e) if matches!(e.code(), Some("ImageNotFoundException" | "RepositoryNotFoundException")) => Ok(None),
            Err(e) => Err(remote(repo, e)),
        }
    }
}

fn remote<E, R>(repo: &str, e: SdkError<E, R>) -> RegistryError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    RegistryError::Remote(format!("cannot ask ECR about `{repo}`: {}", crate::aws::error_text(&e)))
}

impl Registry for EcrRegistry {
    fn verify(&self, repo: &str, digest: &Digest) -> Result<()> {
        parse_repository(repo)?;
        if self.holds(repo, digest)? {
            Ok(())
        } else {
            Err(RegistryError::DigestNotFound { repo: repo.to_string(), digest: digest.clone() })
        }
    }

    /// The digests join the repository's next request (the first verification's), unless
    /// answered already; none is sent now.
    fn expect(&self, repo: &str, digests: &[Digest]) {
        let mut queues = self.verifying.queues.lock().expect("ECR verifications");
        let queue = queues.entry(repo.to_string()).or_default();
        for d in digests {
            if !queue.early.contains_key(d) && !queue.answers.contains_key(d) {
                queue.waiting.entry(d.clone()).or_default();
            }
        }
    }

    fn resolve_tag(&self, repo: &str, tag: &str) -> Result<Digest> {
        if !is_tag(tag) {
            return Err(RegistryError::InvalidTag(tag.to_string()));
        }
        self.describe(repo, ImageIdentifier::builder().image_tag(tag).build())?
            .ok_or_else(|| RegistryError::TagNotFound { repo: repo.to_string(), tag: tag.to_string() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_uris_split_into_account_and_name() {
        assert_eq!(
            parse_repository("123456789012.dkr.ecr.eu-central-1.amazonaws.com/shop/web").unwrap(),
            (Some("123456789012".into()), "shop/web".into())
        );
        assert_eq!(parse_repository("shop/web").unwrap(), (None, "shop/web".into()));
        assert!(parse_repository("ghcr.io/shop/web").is_err());
        assert!(parse_repository("Shop").is_err());
    }
}
