//! Fills a control-plane database with a valid audit chain of N records, for `cargo xtask
//! bench-control` (audit verify of 1,000,000 records): `audit_fill DB_URL N`.

use ringfence_proto::AuditRecord;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(url), Some(n)) = (args.get(1), args.get(2).and_then(|n| n.parse::<u64>().ok())) else {
        eprintln!("usage: audit_fill DB_URL N");
        std::process::exit(64);
    };
    let db = ringfence_control::db::Db::connect(url).await.expect("database");
    let mut prev: Option<(u64, String)> = None;
    let started = std::time::Instant::now();
    for chunk_start in (0..n).step_by(10_000) {
        let mut tx = db.begin().await.expect("transaction");
        for i in chunk_start..(chunk_start + 10_000).min(n) {
            let details = serde_json::json!({"node_id": format!("n-{:04}", i % 1000), "id": format!("e{i}"), "kind": "deny", "severity": "warning", "summary": "benchmark record"});
            let record = AuditRecord::next(
                prev.as_ref().map(|(s, h)| (*s, h.as_str())),
                1_780_000_000_000 + i as i64,
                "node:bench",
                "alert",
                details,
            );
            ringfence_control::db::audit::insert(&mut *tx, &record).await.expect("insert");
            prev = Some((record.seq, record.hash));
        }
        tx.commit().await.expect("commit");
    }
    println!("filled {n} audit records in {:.1} s", started.elapsed().as_secs_f64());
}
