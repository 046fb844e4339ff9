//! Request and response bodies of the control-plane HTTP API (see `control-plane/openapi.yaml`).
//! Request bodies reject unknown fields. Times are Unix milliseconds (`*_ms`).
//!
//! By topic: [`nodes`] (tokens, enrollment, inventory), [`events`], [`policies`] (selectors,
//! versions), [`responses`] (errors, audit verdict). The parts never use this module.

pub mod events;
pub mod nodes;
pub mod observe;
pub mod policies;
pub mod responses;

pub use events::*;
pub use nodes::*;
pub use observe::*;
pub use policies::*;
pub use responses::*;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selector_parse_match_display() {
        let s = Selector::parse("region=eu, gpu=h100").unwrap();
        assert_eq!(s.region.as_deref(), Some("eu"));
        assert_eq!(s.to_string(), "region=eu,gpu=h100");
        let labels: Labels = [("gpu".to_string(), "h100".to_string())].into();
        assert!(s.matches("eu", &labels));
        assert!(!s.matches("us", &labels));
        assert!(!s.matches("eu", &Labels::new()));
        assert!(Selector::parse("").unwrap().matches("anything", &Labels::new()));
        assert_eq!(Selector::parse("").unwrap().to_string(), "*");
        assert_eq!(Selector::parse("region"), Err(SelectorError { item: "region".into() }));
        assert!(Selector::parse("=x").is_err());
    }

    #[test]
    fn request_bodies_reject_unknown_fields() {
        let err = serde_json::from_str::<TokenRequest>(r#"{"region":"eu","ttl":5}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field `ttl`"), "{err}");
        let err = serde_json::from_str::<EventBatch>(
            r#"{"events":[{"id":"1","kind":"deny","time_ms":1,"summary":"s","x":1}]}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("unknown field `x`"), "{err}");
        let ok: EventBatch =
            serde_json::from_str(r#"{"events":[{"id":"1","kind":"deny","time_ms":1,"summary":"s"}]}"#)
                .unwrap();
        assert_eq!(ok.events[0].severity, "warning");
    }
}
