//! The map and program names are declared twice: as constants in `ringfence-common` (which the
//! agent opens and pins by) and as statics and functions in the eBPF crate (whose names the
//! object carries; aya-ebpf's `#[map]` and program macros take no constant). This test parses the
//! object the agent embeds and fails on any name that one side has and the other lacks.
use std::collections::BTreeSet;

use aya_obj::{maps::PinningType, Object};
use ringfence_agent::bpf::EBPF_OBJECT;
use ringfence_common::{
    HOOKS, PINNED_MAPS, PROGRAMS, SKB_BUDGET, SKB_PARSE, SKB_VERDICT4, SKB_VERDICT6, SKCACHE_MAP, TC_EGRESS,
    TC_INGRESS, TC_VERDICT4, TC_VERDICT6,
};

fn object() -> Object {
    Object::parse(EBPF_OBJECT).expect("the embedded eBPF object parses")
}

fn set<'a>(names: impl IntoIterator<Item = &'a str>) -> BTreeSet<String> {
    names.into_iter().map(str::to_string).collect()
}

#[test]
fn every_pinned_map_is_named_in_common_and_every_name_is_a_map() {
    let obj = object();
    let in_object: BTreeSet<String> = obj.maps.keys().cloned().collect();
    let named = set(PINNED_MAPS);
    assert_eq!(named.len(), PINNED_MAPS.len(), "PINNED_MAPS lists a name twice: {PINNED_MAPS:?}");
    let missing: Vec<_> = named.difference(&in_object).collect();
    assert!(missing.is_empty(), "named in ringfence-common, absent from the object: {missing:?}");
    // Every map the object pins by name must be one the agent knows by that name.
    let pinned: BTreeSet<String> = obj
        .maps
        .iter()
        .filter(|(_, map)| map.pinning() == PinningType::ByName)
        .map(|(name, _)| name.clone())
        .collect();
    let unnamed: Vec<_> = pinned.difference(&named).collect();
    assert!(unnamed.is_empty(), "pinned by the object, not named in ringfence-common: {unnamed:?}");
    // Only the socket storage (pinned by the agent, by path) is named without being pinned by name.
    let by_path: Vec<_> = named.difference(&pinned).collect();
    assert_eq!(by_path, [SKCACHE_MAP], "maps named in common that the object does not pin");
}

#[test]
fn every_program_is_named_in_common_and_every_name_is_a_program() {
    let obj = object();
    let in_object: BTreeSet<String> = obj.programs.keys().cloned().collect();
    let named = set(PROGRAMS.into_iter().chain([
        SKB_BUDGET,
        SKB_VERDICT4,
        SKB_VERDICT6,
        SKB_PARSE,
        TC_EGRESS,
        TC_INGRESS,
        TC_VERDICT4,
        TC_VERDICT6,
    ]));
    assert_eq!(named, in_object, "program names in ringfence-common (left) and in the object (right)");
    let hooks = set(HOOKS);
    let not_programs: Vec<_> = hooks.difference(&in_object).collect();
    assert!(not_programs.is_empty(), "HOOKS (event sources) that are not programs: {not_programs:?}");
}
