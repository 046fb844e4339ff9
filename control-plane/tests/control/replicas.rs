//! Two control-plane replicas sharing only a PostgreSQL database (and the state directory's
//! keys): a policy applied on one reaches an agent long-polling the other (LISTEN/NOTIFY).

use std::time::{Duration, Instant};

use crate::common::{pg, policy_yaml, Backend, Options, TestServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_applied_on_one_replica_reaches_agents_of_the_other() {
    let db_url = pg::fresh_database().await;
    let a = TestServer::start_with(
        Backend::Postgres,
        Options { db_url: Some(db_url.clone()), ..Default::default() },
    )
    .await;
    let options =
        Options { db_url: Some(db_url), state_dir: Some(a.state_dir.clone()), ..Default::default() };
    let b = TestServer::start_with(Backend::Postgres, options).await;
    assert_ne!(a.base, b.base);
    // Enrolled through A, watching B.
    let agent = a.agent("eu", &[], "key-1").await.against(&b);
    let waiting = tokio::spawn(async move {
        let signed = agent.poll(0, 20).await;
        (signed, agent)
    });
    b.wait_for_metric("ringfence_longpoll_watchers", 1.0).await;
    let applied = Instant::now();
    a.apply(&policy_yaml("shared", "198.51.100.0/24"), "region=eu").await;
    let (signed, agent) = waiting.await.unwrap();
    let elapsed = applied.elapsed();
    let bundle = signed.expect("replica B served the bundle").verify(&agent.pinned, 0).unwrap();
    assert_eq!(bundle.policy_version, 1);
    assert!(elapsed < Duration::from_secs(2), "propagation through the database took {elapsed:?}");
    // And the other way round: applied on B, polled on A.
    let agent_a = agent.against(&a);
    b.apply(&policy_yaml("shared", "203.0.113.0/24"), "region=eu").await;
    let next = agent_a
        .poll(bundle.version, 5)
        .await
        .expect("replica A serves B's change")
        .verify(&agent.pinned, bundle.version)
        .unwrap();
    assert_eq!(next.policy_version, 2);
    // The audit chain stays one chain across replicas.
    let v: ringfence_proto::api::AuditVerification =
        b.admin_get("/v1/audit/verify").await.json().await.unwrap();
    assert!(v.ok && v.records >= 5, "{v:?}");
    b.stop().await;
    a.stop().await;
}
