//! Issue 15, credentials: the GitHub App Atlantis signs in as is the proxy's too. Given only
//! Atlantis's `gh-app-*` settings (no token), the resolver reads `atlantis.yaml` and queued
//! plans are announced with the app's installation token, which is refreshed as it expires; the
//! fake GitHub API checks the JWT and the tokens as GitHub does.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use atlantis_lock_proxy::config::{CliOverrides, Config};
use atlantis_lock_proxy::vcs::{
    ApiConfig, GithubAppAuth, GithubAppCredentials, GithubAppKey, GithubClient,
};

use super::{API_SECRET, ATLANTIS_YAML, NET};
use crate::enhanced::{REPO, SECRET, base_yaml};
use crate::support::app_key::{app_key, other_key};
use crate::support::eventually;
use crate::support::fake_atlantis::{FakeAtlantis, FakeOptions};
use crate::support::fake_vcs::{BAD_CREDENTIALS, FakeFile, FakePull, FakeVcs, UNDECODABLE};
use crate::support::http::Reply;
use crate::support::proxy::{RunningProxy, spawn_config};
use crate::support::webhooks::github_comment;

const APP_ID: u64 = 4242;

/// A temporary directory for Atlantis's files, removed on drop.
struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "alp-ghapp-{name}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Dir(dir)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The fake GitHub API as the app's: `ATLANTIS_YAML`, pulls 1..=9, the app installed as
/// `installations`.
async fn github(installations: &[u64]) -> FakeVcs {
    let vcs = FakeVcs::github().await;
    vcs.enable_github_app(APP_ID, &app_key().public_pem, installations);
    vcs.add_file(REPO, "atlantis.yaml", ATLANTIS_YAML);
    for n in 1..=9 {
        vcs.add_pull(
            REPO,
            n,
            FakePull {
                head_sha: format!("{n:040x}"),
                base_branch: "main".into(),
                files: vec![FakeFile::modified("net/main.tf")],
            },
        );
    }
    vcs
}

struct AppSetup {
    fake: FakeAtlantis,
    vcs: FakeVcs,
    proxy: RunningProxy,
    config: Config,
    _dir: Dir,
}

impl AppSetup {
    /// The proxy (memory engine, split 100) loaded from a file with `env` as its environment,
    /// told only where the fake GitHub API is (`github-api-url`): no token.
    async fn start(vcs: FakeVcs, dir: Dir, env: &[(&str, &str)], atlantis_extra: &str) -> Self {
        let fake = FakeAtlantis::start_with(FakeOptions {
            github_secret: Some(SECRET.into()),
            api_secret: Some(API_SECRET.into()),
            ..FakeOptions::default()
        })
        .await;
        fake.set_project(REPO, "net", "default", "netproj", "on_plan");
        let extra = format!(
            "  api-secret: {API_SECRET}\n  vcs-tokens:\n    github-api-url: {}\n{atlantis_extra}",
            vcs.base_url()
        );
        let yaml = format!(
            "listen: 127.0.0.1:0\nupstream:\n  url: {}\nadmin:\n  listen: 127.0.0.1:0\n{}",
            fake.url(),
            base_yaml(None, "", &extra)
        );
        let path = dir.write("proxy.yaml", &yaml);
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let config = Config::load(Some(&path), &env, &CliOverrides::default())
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            config.atlantis.vcs_tokens.github.is_none(),
            "no token given"
        );
        let proxy = spawn_config(config.clone()).await;
        AppSetup {
            fake,
            vcs,
            proxy,
            config,
            _dir: dir,
        }
    }

    async fn comment(&self, pull: i64, text: &str) -> Reply {
        github_comment(SECRET, REPO, pull, &format!("user{pull}"), text)
            .send_to(&self.proxy.url("/events"))
            .await
    }

    /// Pull 1 plans `net`; Atlantis holds `netproj` for it.
    async fn pull_one_holds_net(&self) {
        let r = self.comment(1, "atlantis plan -d net").await;
        assert_eq!(r.status, 200, "{}", r.text());
        let held = eventually(Duration::from_secs(10), || {
            self.fake
                .locks()
                .iter()
                .any(|(k, l)| k.ends_with("/net/default/netproj") && l.pull == 1)
        })
        .await;
        assert!(held, "Atlantis locks {:?}", self.fake.locks().keys());
    }

    /// Pull `n` plans `net` behind pull 1: queued under the named key (so atlantis.yaml was
    /// read), and its pull is told so in a comment.
    async fn queue_and_announce(&self, n: i64) {
        let r = self.comment(n, "atlantis plan -d net").await;
        assert_eq!(r.status, 202, "{}", r.text());
        assert_eq!(r.json()["locks"][0]["key"], NET, "{}", r.text());
        let told = eventually(Duration::from_secs(10), || {
            self.vcs
                .comments()
                .iter()
                .any(|(_, p, body)| *p == n && body.contains("Plan Queued"))
        })
        .await;
        assert!(
            told,
            "no notice on #{n}; refusals {:?}",
            self.vcs.auth_refusals()
        );
    }

    /// The `Authorization` of every repository call, in order.
    fn repo_auth(&self) -> Vec<String> {
        self.vcs
            .requests()
            .into_iter()
            .filter(|r| r.uri.starts_with("/api/v3/repos/"))
            .map(|r| r.auth.unwrap_or_default())
            .collect()
    }
}

#[tokio::test]
async fn with_only_atlantis_app_settings_plans_are_resolved_and_announced_with_an_installation_token()
 {
    let key = app_key();
    let s = AppSetup::start(
        github(&[77]).await,
        Dir::new("env"),
        &[
            ("ATLANTIS_GH_APP_ID", "4242"),
            ("ATLANTIS_GH_APP_KEY", &key.private_pem),
            ("ATLANTIS_GH_APP_INSTALLATION_ID", "77"),
        ],
        "",
    )
    .await;
    s.pull_one_holds_net().await;
    s.queue_and_announce(2).await;

    // The resolver and the notifier shared one installation token, fetched once with a JWT.
    let issued = s.vcs.issued_tokens();
    assert_eq!(issued.len(), 1, "{issued:?}");
    assert_eq!(
        s.vcs
            .count_method("POST", "/api/v3/app/installations/77/access_tokens"),
        1
    );
    assert_eq!(s.vcs.count("/app/installations?"), 0, "the id was given");
    let auth = s.repo_auth();
    assert!(auth.len() >= 3, "pull, atlantis.yaml, comment: {auth:?}");
    assert!(
        auth.iter().all(|a| *a == format!("Bearer {}", issued[0])),
        "{auth:?}"
    );
    assert!(
        s.vcs.auth_refusals().is_empty(),
        "{:?}",
        s.vcs.auth_refusals()
    );
    // Nothing the proxy sent holds the private key.
    let body_line = key.private_pem.lines().nth(1).unwrap();
    assert!(
        s.vcs
            .requests()
            .iter()
            .all(|r| !r.auth.clone().unwrap_or_default().contains(body_line))
    );
    s.proxy.stop().await;
}

#[tokio::test]
async fn the_atlantis_config_file_names_the_key_file_and_the_only_installation_is_found() {
    let dir = Dir::new("file");
    let key_path = dir.write("app.pem", &app_key().private_pem);
    let atlantis_config = dir.write(
        "atlantis.yaml",
        &format!(
            "gh-app-id: {APP_ID}\ngh-app-key-file: {}\n",
            key_path.display()
        ),
    );
    let s = AppSetup::start(
        github(&[91]).await,
        dir,
        &[],
        &format!("  server-config: {}\n", atlantis_config.display()),
    )
    .await;
    let report = s.config.atlantis_settings_report().join("\n");
    assert!(
        report.contains("gh-app-id") && report.contains("4242  [Atlantis config"),
        "{report}"
    );
    assert!(report.contains("gh-app-key-file"), "{report}");
    let said: Vec<String> = s
        .config
        .capabilities()
        .into_iter()
        .map(|c| c.text)
        .collect();
    let said = said.join("\n");
    assert!(said.contains("as GitHub App 4242"), "{said}");
    assert!(said.contains("found at first use"), "{said}");
    assert!(!said.contains("SILENT"), "{said}");

    s.pull_one_holds_net().await;
    s.queue_and_announce(2).await;
    assert_eq!(s.vcs.count_method("GET", "/api/v3/app/installations"), 1);
    assert_eq!(
        s.vcs
            .count_method("POST", "/api/v3/app/installations/91/access_tokens"),
        1
    );
    s.proxy.stop().await;
}

#[tokio::test]
async fn an_expiring_token_is_refreshed_before_use_and_a_revoked_one_after_its_401() {
    let vcs = github(&[77]).await;
    vcs.set_token_lifetime(Duration::from_secs(3));
    let s = AppSetup::start(
        vcs,
        Dir::new("refresh"),
        &[
            ("ATLANTIS_GH_APP_ID", "4242"),
            ("ATLANTIS_GH_APP_KEY", &app_key().private_pem),
        ],
        "",
    )
    .await;
    s.pull_one_holds_net().await;
    s.queue_and_announce(2).await;
    let before = s.vcs.issued_tokens().len();
    assert!(before >= 1);

    // Every token issued so far has expired; the next one lives an hour.
    tokio::time::sleep(Duration::from_millis(3200)).await;
    s.vcs.set_token_lifetime(Duration::from_secs(3600));
    s.queue_and_announce(3).await;
    assert_eq!(s.vcs.issued_tokens().len(), before + 1);
    assert!(
        s.vcs.auth_refusals().is_empty(),
        "an expired token was sent: {:?}",
        s.vcs.auth_refusals()
    );

    // Revoked early: GitHub answers 401 once, the proxy fetches one new token and goes on.
    s.vcs.revoke_tokens();
    s.queue_and_announce(4).await;
    assert_eq!(s.vcs.issued_tokens().len(), before + 2);
    let refusals = s.vcs.auth_refusals();
    assert!(!refusals.is_empty());
    assert!(
        refusals.iter().all(|(status, path, m)| *status == 401
            && path.starts_with("/api/v3/repos/")
            && m == BAD_CREDENTIALS),
        "{refusals:?}"
    );
    let last = s.vcs.issued_tokens().last().cloned().unwrap();
    assert_eq!(
        s.repo_auth().last().cloned().unwrap(),
        format!("Bearer {last}")
    );
    s.proxy.stop().await;
}

fn credentials(key: &str, installation: Option<u64>) -> GithubAppCredentials {
    GithubAppCredentials {
        app_id: APP_ID,
        key: GithubAppKey::from_pem(key.as_bytes()).unwrap(),
        installation_id: installation,
    }
}

fn client(vcs: &FakeVcs, creds: &GithubAppCredentials) -> Arc<GithubClient> {
    let auth = GithubAppAuth::new(creds, ApiConfig::new(vcs.base_url(), None)).unwrap();
    Arc::new(GithubClient::with_app(ApiConfig::new(vcs.base_url(), None), auth).unwrap())
}

#[tokio::test]
async fn concurrent_calls_share_one_token_refresh() {
    let vcs = github(&[77]).await;
    // A slow token endpoint keeps the refresh in flight while every call arrives.
    vcs.set_delay(Duration::from_millis(150));
    let c = client(&vcs, &credentials(&app_key().private_pem, Some(77)));
    let calls = (0..16).map(|_| {
        let c = c.clone();
        tokio::spawn(async move { c.pull(REPO, 1).await })
    });
    for r in futures_util::future::join_all(calls).await {
        assert_eq!(r.unwrap().unwrap().base_branch, "main");
    }
    assert_eq!(vcs.issued_tokens().len(), 1);
    assert_eq!(
        vcs.count_method("POST", "/api/v3/app/installations/77/access_tokens"),
        1
    );
}

#[tokio::test]
async fn a_key_that_is_not_the_apps_is_refused_with_githubs_own_message() {
    let vcs = github(&[77]).await;
    let c = client(&vcs, &credentials(&other_key().private_pem, Some(77)));
    let e = c.pull(REPO, 1).await.unwrap_err();
    assert_eq!(e.kind(), "auth");
    let text = e.to_string();
    assert!(text.contains("401") && text.contains(UNDECODABLE), "{text}");
    assert_eq!(
        vcs.auth_refusals(),
        vec![(
            401,
            "/api/v3/app/installations/77/access_tokens".into(),
            UNDECODABLE.into()
        )]
    );
    assert!(vcs.issued_tokens().is_empty());
}

#[tokio::test]
async fn a_pkcs8_key_works_and_an_unknown_installation_is_githubs_404() {
    let vcs = github(&[77]).await;
    let pkcs8 = app_key().pkcs8_pem();
    assert!(pkcs8.starts_with("-----BEGIN PRIVATE KEY-----"));
    let c = client(&vcs, &credentials(&pkcs8, Some(77)));
    assert!(c.pull(REPO, 1).await.is_ok());

    let c = client(&vcs, &credentials(&pkcs8, Some(5)));
    let e = c.pull(REPO, 1).await.unwrap_err().to_string();
    assert!(e.contains("404") && e.contains("Not Found"), "{e}");
}

#[tokio::test]
async fn an_app_installed_twice_needs_the_installation_id_as_in_atlantis() {
    let vcs = github(&[77, 78]).await;
    let c = client(&vcs, &credentials(&app_key().private_pem, None));
    let e = c.pull(REPO, 1).await.unwrap_err().to_string();
    assert!(
        e.contains("2 installations") && e.contains("gh-app-installation-id"),
        "{e}"
    );
    assert!(vcs.issued_tokens().is_empty());
}

#[test]
fn a_bad_app_key_is_a_config_error_naming_the_setting_without_the_key() {
    let dir = Dir::new("bad");
    let proxy = dir.write("proxy.yaml", "");
    let load = |env: &[(&str, &str)]| {
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::load(Some(&proxy), &env, &CliOverrides::default()).map(|_| ())
    };
    let garbled = "-----BEGIN RSA PRIVATE KEY-----\nMIIBOgIBAAJBAKj34GkxFhD90vcNLYLInFEX6Ppy1tPf9Cnzj4p4WGeKLs1Pt8Qu\n-----END RSA PRIVATE KEY-----\n";
    let e = load(&[
        ("ATLANTIS_GH_APP_ID", "4242"),
        ("ATLANTIS_GH_APP_KEY", garbled),
    ])
    .unwrap_err();
    assert_eq!(e.key, "environment ATLANTIS_GH_APP_KEY");
    assert!(e.message.contains("`gh-app-key`"), "{e}");
    assert!(!e.to_string().contains("MIIBOg"), "{e}");

    // A public key in the key file.
    let public = dir.write("public.pem", &app_key().public_pem);
    let e = load(&[
        ("ATLANTIS_GH_APP_ID", "4242"),
        ("ATLANTIS_GH_APP_KEY_FILE", public.to_str().unwrap()),
    ])
    .unwrap_err();
    assert_eq!(e.key, "environment ATLANTIS_GH_APP_KEY_FILE");
    assert!(e.message.contains("not an RSA private key"), "{e}");

    // Both forms, or none: Atlantis refuses to start either way.
    let e = load(&[
        ("ATLANTIS_GH_APP_ID", "4242"),
        ("ATLANTIS_GH_APP_KEY", &app_key().private_pem),
        ("ATLANTIS_GH_APP_KEY_FILE", public.to_str().unwrap()),
    ])
    .unwrap_err();
    assert!(e.message.contains("both set"), "{e}");
    let e = load(&[("ATLANTIS_GH_APP_ID", "4242")]).unwrap_err();
    assert_eq!(e.key, "environment ATLANTIS_GH_APP_ID");
    let e = load(&[
        ("ATLANTIS_GH_APP_ID", "my-app"),
        ("ATLANTIS_GH_APP_KEY", &app_key().private_pem),
    ])
    .unwrap_err();
    assert!(e.message.contains("not a number"), "{e}");
}

#[test]
fn a_token_wins_over_the_app_where_atlantis_lets_it() {
    let dir = Dir::new("precedence");
    let load = |proxy_yaml: &str, env: &[(&str, &str)]| {
        let proxy = dir.write("proxy.yaml", proxy_yaml);
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let c = Config::load(Some(&proxy), &env, &CliOverrides::default()).unwrap();
        (
            c.atlantis.vcs_tokens.github.is_some(),
            c.atlantis.vcs_tokens.github_app.is_some(),
        )
    };
    let key = app_key().private_pem.as_str();
    let app = [("ATLANTIS_GH_APP_ID", "4242"), ("ATLANTIS_GH_APP_KEY", key)];
    // Atlantis signs in as the App unless gh-user is set (then it uses gh-token).
    let token_too = [app[0], app[1], ("ATLANTIS_GH_TOKEN", "ghp_x")];
    assert_eq!(load("", &token_too), (false, true));
    let with_user = [
        token_too[0],
        token_too[1],
        token_too[2],
        ("ATLANTIS_GH_USER", "bot"),
    ];
    assert_eq!(load("", &with_user), (true, false));
    // The proxy's own token wins over both.
    assert_eq!(
        load("atlantis:\n  vcs-tokens:\n    github: ghp_proxy\n", &app),
        (true, false)
    );
}

/// The fake is as strict as GitHub: what the proxy passes, a sloppy JWT would not.
#[tokio::test]
async fn the_fake_refuses_jwts_as_github_does() {
    use crate::support::fake_vcs::{EXPIRED, IAT_FUTURE, TOO_FAR};
    use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
    let vcs = github(&[77]).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let rs256 = |key: &str, iat: u64, exp: u64, iss: &str| {
        let claims = serde_json::json!({"iat": iat, "exp": exp, "iss": iss});
        let k = EncodingKey::from_rsa_pem(key.as_bytes()).unwrap();
        encode(&Header::new(Algorithm::RS256), &claims, &k).unwrap()
    };
    let mine = app_key().private_pem.as_str();
    let hs256 = encode(
        &Header::new(Algorithm::HS256),
        &serde_json::json!({"iat": now - 60, "exp": now + 300, "iss": "4242"}),
        &EncodingKey::from_secret(b"guess"),
    )
    .unwrap();
    let cases = [
        (rs256(mine, now - 60, now + 540, "4242"), None),
        (rs256(mine, now - 700, now - 100, "4242"), Some(EXPIRED)),
        (rs256(mine, now - 60, now + 3600, "4242"), Some(TOO_FAR)),
        (rs256(mine, now + 120, now + 300, "4242"), Some(IAT_FUTURE)),
        (rs256(mine, now - 60, now + 540, "4243"), Some(UNDECODABLE)),
        (
            rs256(&other_key().private_pem, now - 60, now + 540, "4242"),
            Some(UNDECODABLE),
        ),
        (hs256, Some(UNDECODABLE)),
        ("not-a-jwt".to_owned(), Some(UNDECODABLE)),
    ];
    let url = format!("{}/app/installations/77/access_tokens", vcs.base_url());
    for (jwt, refusal) in cases {
        let auth = format!("Bearer {jwt}");
        let r = crate::support::http::send(
            http::Method::POST,
            &url,
            &[("authorization", &auth)],
            bytes::Bytes::new(),
        )
        .await;
        match refusal {
            None => {
                assert_eq!(r.status, 201, "{}", r.text());
                let token = r.json()["token"].as_str().unwrap().to_owned();
                assert!(token.starts_with("ghs_"), "{token}");
                assert!(r.json()["expires_at"].as_str().unwrap().ends_with('Z'));
                // The token opens the repository endpoints, in either scheme; a JWT does not.
                let pull = format!("{}/repos/{REPO}/pulls/1", vcs.base_url());
                for scheme in ["token", "Bearer"] {
                    let h = format!("{scheme} {token}");
                    let r = crate::support::http::send(
                        http::Method::GET,
                        &pull,
                        &[("authorization", &h)],
                        bytes::Bytes::new(),
                    )
                    .await;
                    assert_eq!(r.status, 200, "{scheme}: {}", r.text());
                }
                let r = crate::support::http::send(
                    http::Method::GET,
                    &pull,
                    &[("authorization", &auth)],
                    bytes::Bytes::new(),
                )
                .await;
                assert_eq!(r.status, 401);
                assert_eq!(r.json()["message"], BAD_CREDENTIALS);
            }
            Some(message) => {
                assert_eq!(r.status, 401, "{}", r.text());
                assert_eq!(r.json()["message"], message);
                assert_eq!(r.json()["status"], "401");
                assert_eq!(
                    r.json()["documentation_url"],
                    "https://docs.github.com/rest"
                );
            }
        }
    }
}
