//! The console's API on the real server: accounts and roles, cookie sessions with CSRF tokens,
//! the security headers, the pages' data (fleet, node, policies, alerts, flows, audit) and that
//! every write is audited. (The browser test with real agents is tests/tests/console.rs.)

use reqwest::{Client, StatusCode};
use ringfence_proto::api::{Event, EventBatch};
use serde_json::{json, Value};

use crate::common::{policy_yaml, Backend, TestServer};

/// A logged-in console user: the session cookie and its CSRF token.
struct Session {
    http: Client,
    base: String,
    cookie: String,
    csrf: String,
}

impl Session {
    async fn login(server: &TestServer, body: Value) -> Session {
        let resp =
            server.anonymous().post(server.url("/console/api/login")).json(&body).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "login {body}");
        let set = resp.headers()["set-cookie"].to_str().unwrap().to_owned();
        for attribute in ["Path=/", "Secure", "HttpOnly", "SameSite=Strict"] {
            assert!(set.contains(attribute), "{attribute} in {set}");
        }
        let cookie = set.split(';').next().unwrap().to_owned();
        assert!(cookie.starts_with("__Host-rf_session="), "{cookie}");
        let info: Value = resp.json().await.unwrap();
        let csrf = info["csrf"].as_str().unwrap().to_owned();
        Session { http: server.anonymous(), base: server.url(""), cookie, csrf }
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        self.http.get(format!("{}{path}", self.base)).header("cookie", &self.cookie).send().await.unwrap()
    }

    async fn post_with(&self, path: &str, body: &Value, csrf: Option<&str>) -> reqwest::Response {
        let mut req =
            self.http.post(format!("{}{path}", self.base)).header("cookie", &self.cookie).json(body);
        if let Some(token) = csrf {
            req = req.header("x-csrf-token", token);
        }
        req.send().await.unwrap()
    }

    async fn post(&self, path: &str, body: &Value) -> reqwest::Response {
        self.post_with(path, body, Some(&self.csrf.clone())).await
    }

    async fn json(&self, path: &str) -> Value {
        let resp = self.get(path).await;
        assert_eq!(resp.status(), StatusCode::OK, "GET {path}");
        resp.json().await.unwrap()
    }
}

async fn add_account(server: &TestServer, name: &str, role: &str, password: &str) -> StatusCode {
    let body = json!({"name": name, "role": role, "password": password});
    server.admin_post("/console/api/accounts", &body).await.status()
}

fn apply_body(name: &str, cidr: &str, region: &str) -> Value {
    json!({"policy_yaml": policy_yaml(name, cidr), "selector": {"region": region}})
}

async fn console_roles_sessions_csrf_and_audit(backend: Backend) {
    let server = TestServer::start(backend).await;
    // The app is served with a strict CSP; its data is not served to anyone.
    let page = server.anonymous().get(server.url("/console/")).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let csp = page.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe"), "{csp}");
    assert_eq!(page.headers()["x-frame-options"], "DENY");
    let html = page.text().await.unwrap();
    let script = html.split("src=\"").nth(1).and_then(|s| s.split('"').next()).expect("a script");
    assert!(script.starts_with("/console/assets/") && !html.contains("<script>"), "{html}");
    let js = server.anonymous().get(server.url(script)).send().await.unwrap();
    assert_eq!(
        (js.status(), js.headers()["content-type"].to_str().unwrap()),
        (StatusCode::OK, "text/javascript; charset=utf-8")
    );
    let anonymous = server.anonymous().get(server.url("/console/api/fleet")).send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);

    // Accounts: by the admin credential; passwords at least 12 characters; names unique.
    assert_eq!(add_account(&server, "vera", "viewer", "viewer-password-1").await, StatusCode::CREATED);
    assert_eq!(add_account(&server, "otto", "operator", "operator-password-1").await, StatusCode::CREATED);
    assert_eq!(add_account(&server, "vera", "admin", "another-password-1").await, StatusCode::CONFLICT);
    assert_eq!(add_account(&server, "shorty", "viewer", "short").await, StatusCode::BAD_REQUEST);
    assert_eq!(
        add_account(&server, "admin", "viewer", "long-enough-password").await,
        StatusCode::BAD_REQUEST
    );
    let accounts: Value = server.admin_get("/console/api/accounts").await.json().await.unwrap();
    assert_eq!(accounts.as_array().unwrap().len(), 2);
    assert!(!accounts.to_string().contains("argon2"), "no hashes in {accounts}");
    let wrong = json!({"username": "vera", "password": "not-her-password"});
    let refused =
        server.anonymous().post(server.url("/console/api/login")).json(&wrong).send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);

    let vera = Session::login(&server, json!({"username": "vera", "password": "viewer-password-1"})).await;
    let otto = Session::login(&server, json!({"username": "otto", "password": "operator-password-1"})).await;
    let admin = Session::login(&server, json!({"token": server.admin_token})).await;
    assert_eq!(vera.json("/console/api/session").await["role"], "viewer");
    assert_eq!(admin.json("/console/api/session").await["role"], "admin");

    // A viewer reads but cannot apply; an operator applies only with the CSRF token.
    let agent = server.agent("eu", &[], "key-a").await;
    let apply = apply_body("console-a", "203.0.113.0/24", "eu");
    assert_eq!(vera.post("/console/api/policies/apply", &apply).await.status(), StatusCode::FORBIDDEN);
    assert_eq!(vera.get("/console/api/accounts").await.status(), StatusCode::FORBIDDEN);
    let no_csrf = otto.post_with("/console/api/policies/apply", &apply, None).await;
    assert_eq!(no_csrf.status(), StatusCode::FORBIDDEN);
    let forged = otto.post_with("/console/api/policies/apply", &apply, Some(&vera.csrf)).await;
    assert_eq!(forged.status(), StatusCode::FORBIDDEN, "another session's token");
    let applied = otto.post("/console/api/policies/apply", &apply).await;
    assert_eq!(applied.status(), StatusCode::OK);
    let v1 = applied.json::<Value>().await.unwrap()["policy"]["version"].as_u64().unwrap();
    let v2 =
        otto.post("/console/api/policies/apply", &apply_body("console-b", "198.51.100.0/24", "eu")).await;
    let v2 = v2.json::<Value>().await.unwrap()["policy"]["version"].as_u64().unwrap();
    let diff = otto.json(&format!("/console/api/policies/diff?from={v1}&to={v2}")).await;
    assert!(diff["diff"].as_str().unwrap().contains("+"), "{diff}");
    let rolled = otto.post("/console/api/policies/rollback", &json!({"version": v1})).await;
    assert_eq!(rolled.status(), StatusCode::OK);
    assert_eq!(rolled.json::<Value>().await.unwrap()["policy"]["rollback_of"], v1);
    let policies = vera.json("/console/api/policies").await;
    let history = policies["history"].as_array().unwrap();
    assert_eq!(history.len(), 3);
    assert!(history.iter().all(|p| p["author"] == "console:otto"), "{policies}");
    assert_eq!(policies["in_force"], json!([v2 + 1]));

    // Fleet and node pages (the node has called in, but applied nothing).
    assert_eq!(agent.post("/v1/report", &json!({})).await.unwrap().status(), StatusCode::NO_CONTENT);
    let fleet = vera.json("/console/api/fleet").await;
    assert_eq!(fleet["nodes"][0]["node_id"], agent.node_id.as_str());
    assert_eq!(fleet["nodes"][0]["expected_policy_version"], v2 + 1);
    assert_eq!(fleet["regions"]["eu"]["degraded"], 1, "{fleet}");
    let node = vera.json(&format!("/console/api/nodes/{}", agent.node_id)).await;
    assert_eq!(node["policy_name"], "console-a");

    // Alerts: filtered, acknowledged once by an operator (not a viewer), summaries escaped by
    // the client (stored as sent).
    let events = vec![
        Event {
            id: "d1".into(),
            kind: "deny".into(),
            time_ms: ringfence_proto::now_ms(),
            severity: "warning".into(),
            summary: "<img src=x onerror=alert(1)> denied".into(),
            details: json!({"dst": "203.0.113.5", "port": 443, "country": "CN", "workload": "job_1"}),
        },
        Event {
            id: "x1".into(),
            kind: "exfiltration".into(),
            time_ms: ringfence_proto::now_ms(),
            severity: "critical".into(),
            summary: "bulk transfer".into(),
            details: json!({"destination": "203.0.113.9", "bytes": 5_000_000, "country": "CN"}),
        },
    ];
    let sent = agent.post("/v1/events", &EventBatch { events }).await.unwrap();
    assert_eq!(sent.status(), StatusCode::OK);
    let only = |q: &str| format!("/console/api/alerts?{q}");
    assert_eq!(vera.json(&only("kind=exfiltration")).await.as_array().unwrap().len(), 1);
    assert_eq!(vera.json(&only("region=eu")).await.as_array().unwrap().len(), 2);
    assert_eq!(vera.json(&only("region=us")).await.as_array().unwrap().len(), 0);
    assert_eq!(vera.json(&only("workload=job_")).await[0]["id"], "d1");
    assert_eq!(vera.json(&only("workload=job%25")).await.as_array().unwrap().len(), 0, "% is no wildcard");
    // Paging: events stored together (one received time) are each listed once.
    let first = vera.json(&only("limit=1")).await;
    let (ms, node, id) =
        (&first[0]["received_ms"], first[0]["node_id"].as_str().unwrap(), first[0]["id"].as_str().unwrap());
    let second = vera.json(&only(&format!("limit=5&after_ms={ms}&after_node={node}&after_id={id}"))).await;
    let second: Vec<&Value> = second.as_array().unwrap().iter().collect();
    assert_eq!(second.len(), 1, "after {first}: {second:?}");
    assert_ne!(second[0]["id"], id);
    let ack = json!({"node_id": agent.node_id, "id": "x1"});
    assert_eq!(vera.post("/console/api/alerts/ack", &ack).await.status(), StatusCode::FORBIDDEN);
    assert_eq!(otto.post("/console/api/alerts/ack", &ack).await.status(), StatusCode::NO_CONTENT);
    assert_eq!(otto.post("/console/api/alerts/ack", &ack).await.status(), StatusCode::CONFLICT);
    let missing = json!({"node_id": agent.node_id, "id": "nope"});
    assert_eq!(otto.post("/console/api/alerts/ack", &missing).await.status(), StatusCode::NOT_FOUND);
    assert_eq!(vera.json(&only("kind=exfiltration")).await[0]["acked_by"], "otto");
    let flows = vera.json("/console/api/flows").await;
    assert_eq!(flows["top"][0]["destination"], "203.0.113.9");
    assert_eq!(flows["top"][0]["bytes"], 5_000_000);

    // Every write is in the audit log, by whom; the chain verifies.
    let audit = vera.json("/console/api/audit?limit=500").await;
    let actions: Vec<(String, String)> = audit["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["actor"].as_str().unwrap().to_owned(), r["action"].as_str().unwrap().to_owned()))
        .collect();
    for (actor, action) in [
        ("console:admin", "account.add"),
        ("console:vera", "console.login"),
        ("admin:console:otto", "policy.apply"),
        ("admin:console:otto", "policy.rollback"),
        ("console:otto", "alert.acknowledge"),
    ] {
        assert!(actions.contains(&(actor.into(), action.into())), "{actor} {action} in {actions:?}");
    }
    let first_page = vera.json("/console/api/audit?limit=2").await;
    let head = first_page["head_seq"].as_u64().unwrap();
    assert_eq!(first_page["records"][0]["seq"], head);
    let older = vera.json(&format!("/console/api/audit?limit=2&before={}", head - 1)).await;
    assert_eq!(older["records"][0]["seq"], head - 2);
    let status = vera.json("/console/api/audit/status").await;
    assert_eq!(status["verification"]["ok"], true, "{status}");

    // Logging out ends the session; removing an account ends its sessions.
    assert_eq!(otto.post("/console/api/logout", &json!({})).await.status(), StatusCode::OK);
    assert_eq!(otto.get("/console/api/fleet").await.status(), StatusCode::UNAUTHORIZED);
    let removed = admin.http.delete(server.url("/console/api/accounts/vera")).header("cookie", &admin.cookie);
    assert_eq!(
        removed.header("x-csrf-token", &admin.csrf).send().await.unwrap().status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(vera.get("/console/api/fleet").await.status(), StatusCode::UNAUTHORIZED);
    server.stop().await;
}

async fn console_logins_are_rate_limited(backend: Backend) {
    let server = TestServer::start(backend).await;
    let wrong = json!({"username": "nobody", "password": "guessing-password"});
    // Ten attempts at once, then one per 30 s (a wrong password takes an Argon2 check, well
    // under 30 s each, so the 11th or 12th is refused).
    let mut statuses = Vec::new();
    while statuses.last() != Some(&StatusCode::TOO_MANY_REQUESTS) && statuses.len() < 12 {
        let resp =
            server.anonymous().post(server.url("/console/api/login")).json(&wrong).send().await.unwrap();
        statuses.push(resp.status());
    }
    assert!(statuses[..10].iter().all(|s| *s == StatusCode::UNAUTHORIZED), "{statuses:?}");
    assert_eq!(statuses.last(), Some(&StatusCode::TOO_MANY_REQUESTS), "{statuses:?}");
    server.stop().await;
}

crate::on_both_backends!(console_roles_sessions_csrf_and_audit, console_logins_are_rate_limited);
