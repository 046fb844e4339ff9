//! The shipped OpenAPI document parses, lists exactly the routes the server has, and is what
//! the server serves.

use std::collections::BTreeSet;

use ringfence_control::api::{INSIGHT_ROUTES, ROUTES};
use yaml_rust2::{Yaml, YamlLoader};

use crate::common::{Backend, TestServer};

fn documented() -> BTreeSet<(String, String)> {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.yaml")).unwrap();
    let doc = &YamlLoader::load_from_str(&text).expect("openapi.yaml parses")[0];
    assert_eq!(doc["openapi"].as_str(), Some("3.0.3"));
    let Yaml::Hash(paths) = &doc["paths"] else { panic!("no paths") };
    let mut out = BTreeSet::new();
    for (path, item) in paths {
        let Yaml::Hash(methods) = item else { panic!("{path:?}") };
        for (method, op) in methods {
            assert!(!op["responses"].is_badvalue(), "{path:?} {method:?} has no responses");
            out.insert((method.as_str().unwrap().to_owned(), path.as_str().unwrap().to_owned()));
        }
    }
    // Every $ref resolves.
    for r in text.split("$ref: \"#/components/").skip(1) {
        let name = r.split('"').next().unwrap();
        let (kind, name) = name.split_once('/').unwrap();
        assert!(!doc["components"][kind][name].is_badvalue(), "dangling $ref {kind}/{name}");
    }
    out
}

#[test]
fn document_lists_exactly_the_routes() {
    let routes: BTreeSet<(String, String)> =
        ROUTES.iter().chain(INSIGHT_ROUTES).map(|(m, p)| (m.to_string(), p.to_string())).collect();
    assert_eq!(documented(), routes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_serves_the_document() {
    let server = TestServer::start(Backend::Sqlite).await;
    let served =
        server.anonymous().get(server.url("/openapi.yaml")).send().await.unwrap().text().await.unwrap();
    assert_eq!(
        served,
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.yaml")).unwrap()
    );
    // Every documented route exists on the server (no 404 from the router for it).
    for (method, path) in ROUTES.iter().chain(INSIGHT_ROUTES) {
        let path = path.replace("{id}", "n-x").replace("{version}", "1");
        let req = match *method {
            "get" => server.anonymous().get(server.url(&path)),
            _ => server.anonymous().post(server.url(&path)).json(&serde_json::json!({})),
        };
        let status = req.send().await.unwrap().status();
        assert_ne!(status, reqwest::StatusCode::NOT_FOUND, "{method} {path}");
        assert_ne!(status, reqwest::StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
    }
    server.stop().await;
}
