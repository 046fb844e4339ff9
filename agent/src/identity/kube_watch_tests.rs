use std::time::Duration;

use super::*;

const UID: &str = "6b9d2f4a-8c1e-4a3b-9d5f-7e0a2c4b6d8f";

fn pod_event(kind: &str, rv: &str, app: &str) -> String {
    format!(
        r#"{{"type":"{kind}","object":{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"trainer-0","namespace":"ml",
        "uid":"{UID}","resourceVersion":"{rv}","labels":{{"app":"{app}"}}}},"spec":{{"nodeName":"gpu-node-07",
        "serviceAccountName":"trainer"}},"status":{{"phase":"Running"}}}}}}"#
    )
    .replace('\n', "")
}

#[test]
fn list_then_watch_events() {
    let cache = PodCache::new();
    let mut watch = PodWatch::new();
    assert_eq!(watch.next_request(), Request::List);
    let list = r#"{"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"1000"},"items":[]}"#;
    assert_eq!(watch.on_list(list.as_bytes(), &cache), Ok(0));
    assert_eq!(watch.next_request(), Request::Watch("1000".into()));
    let step = |w: &mut PodWatch, line: String| w.on_line(line.as_bytes(), &cache);
    assert_eq!(step(&mut watch, pod_event("ADDED", "1001", "llama")), Ok(Outcome::Continue));
    assert_eq!(cache.get(UID).map(|p| p.labels["app"].clone()).as_deref(), Some("llama"));
    assert_eq!(step(&mut watch, pod_event("MODIFIED", "1002", "mistral")), Ok(Outcome::Continue));
    assert_eq!(cache.get(UID).map(|p| p.labels["app"].clone()).as_deref(), Some("mistral"));
    let bookmark = r#"{"type":"BOOKMARK","object":{"kind":"Pod","apiVersion":"v1","metadata":{"resourceVersion":"1500"}}}"#;
    assert_eq!(step(&mut watch, bookmark.into()), Ok(Outcome::Continue));
    assert_eq!(watch.resource_version(), Some("1500"));
    assert_eq!(step(&mut watch, pod_event("DELETED", "1501", "mistral")), Ok(Outcome::Continue));
    assert!(cache.is_empty(), "DELETED must remove the pod");
    assert_eq!(watch.next_request(), Request::Watch("1501".into()));
}

#[test]
fn gone_forces_a_relist_other_errors_do_not() {
    let cache = PodCache::new();
    let mut watch = PodWatch::new();
    let list = r#"{"metadata":{"resourceVersion":"7"},"items":[]}"#;
    watch.on_list(list.as_bytes(), &cache).expect("list accepted");
    let gone = r#"{"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",
        "message":"too old resource version: 7 (912)","reason":"Expired","code":410}}"#;
    assert_eq!(watch.on_line(gone.as_bytes(), &cache), Ok(Outcome::Relist));
    assert_eq!(watch.next_request(), Request::List);
    watch.on_list(list.as_bytes(), &cache).expect("list accepted");
    let forbidden =
        r#"{"type":"ERROR","object":{"kind":"Status","code":403,"reason":"Forbidden","message":"no"}}"#;
    let err = watch.on_line(forbidden.as_bytes(), &cache).expect_err("403 is an error");
    assert_eq!(err.to_string(), "watch error event: 403 Forbidden: no");
    assert_eq!(watch.next_request(), Request::Watch("7".into()), "other errors keep the version");
    assert!(matches!(watch.on_line(b"{not json", &cache), Err(WatchError::Decode { .. })));
    assert_eq!(
        watch.on_line(br#"{"type":"ODD","object":{}}"#, &cache),
        Err(WatchError::UnknownEvent("ODD".into()))
    );
}

#[test]
fn lines_split_across_chunks() {
    let mut s = LineSplitter::default();
    assert_eq!(s.push(b"{\"a\":").expect("chunk"), Vec::<Vec<u8>>::new());
    assert_eq!(s.push(b"1}\n\n{\"b\"").expect("chunk"), vec![b"{\"a\":1}".to_vec()]);
    assert_eq!(s.push(b":2}\n{\"c\":3}").expect("chunk"), vec![b"{\"b\":2}".to_vec()]);
    assert_eq!(s.finish(), Some(b"{\"c\":3}".to_vec()));
    assert_eq!(s.finish(), None);
    assert_eq!(s.push(&vec![b'x'; MAX_LINE + 1]), Err(WatchError::LineTooLong));
}

#[test]
fn backoff_doubles_to_the_cap_and_resets() {
    let mut b = Backoff::new(Duration::from_millis(200), Duration::from_secs(1));
    let delays: Vec<u128> = (0..5).map(|_| b.next_delay().as_millis()).collect();
    assert_eq!(delays, [200, 400, 800, 1000, 1000]);
    b.reset();
    assert_eq!(b.next_delay(), Duration::from_millis(200));
}
