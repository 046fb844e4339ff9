//! Compilation of a [`Policy`] into the kernel's data: per family and action an LPM trie of
//! prefixes, each pointing at a shared, deduplicated [`MatchList`](ringfence_common::MatchList), and per family a geo trie of
//! database networks. Sans-IO: the agent writes the result into the maps.
//!
//! [`compile`] runs the parts, which use one another in one direction only: `trie` (CIDR rules)
//! and `geo` (country rules, using trie's match items and lists), `encrypt` (peers and the home
//! region), `names` (domain names, using trie's lists), `budget` (exfiltration budgets and approved sinks, using encrypt's prefix sets), then `compiled` (the result and the kernel model, using `lookup`); `error` is used by
//! all of them.

mod budget;
mod compiled;
mod encrypt;
mod error;
mod geo;
mod lookup;
mod names;
mod trie;

use std::collections::HashMap;
use std::sync::OnceLock;

use ipnet::IpNet;
use ringfence_common::{
    ACTION_ALLOW, ACTION_DENY, MAX_LISTS, MODE_AUDIT, MODE_ENFORCE, UNKNOWN_ALLOW, UNKNOWN_DEFAULT,
    UNKNOWN_DENY,
};

pub use budget::{rate_burst, CompiledBudgets, MIN_RATE_BURST};
pub use compiled::{Compiled, CompiledFamily};
pub use error::CompileError;
pub use names::{doh_endpoints, CompiledName, DOH_ENDPOINTS, DOH_LIST_DATE};

use crate::countries::country_str;
use crate::geo::GeoDb;
use crate::model::{Action, Mode, Policy, RawSockets, Selector};
use crate::prefix::{net_key, normalize_net};
use budget::build_budgets;
use encrypt::{build_home, build_peers};
use geo::build_geo;
use names::build_names;
use trie::{build_trie, items_of, Entries};

/// Compiles `policy` for the kernel: for each family and action, every (rule, CIDR) is grouped
/// by exact prefix; a prefix's [`MatchList`](ringfence_common::MatchList) holds one item per port entry (or one
/// `0-65535/any` item for a rule without ports) of every rule of that action on that prefix,
/// ordered by rule id. Identical lists are shared. See [`Compiled::evaluate`] for the walk.
///
/// Country rules need `geo`: for each database network of a country some rule names, a
/// [`GeoEntry`](ringfence_common::GeoEntry) points at the match list of the deny rules and of the allow rules naming that
/// country. With `unknownCountry` set, the networks of every other country are loaded too
/// (with `NO_LIST` and country 0) so that the kernel can tell known from unknown addresses.
/// Sibling networks with identical entries are merged. A policy that names countries or sets
/// `unknownCountry` is [`CompileError::GeoDatabaseRequired`] without `geo`; for any other
/// policy `geo` is not used.
pub fn compile(policy: &Policy, geo: Option<&GeoDb>) -> Result<Compiled, CompileError> {
    // Index: [v4 deny, v4 allow, v6 deny, v6 allow].
    let mut groups: [Entries; 4] = Default::default();
    for rule in &policy.rules {
        let items = items_of(rule);
        let mut cidrs: Vec<IpNet> = rule.cidrs.iter().map(|n| normalize_net(n.trunc())).collect();
        cidrs.sort_unstable();
        cidrs.dedup();
        for net in cidrs {
            let family = if net.network().is_ipv4() { 0 } else { 2 };
            let slot = family + usize::from(rule.action == Action::Allow);
            let (key, len) = net_key(net);
            groups[slot].extend(items.iter().map(|item| (key, len, *item)));
        }
    }
    let mut dedup = HashMap::new();
    let mut lists = Vec::new();
    let [d4, a4, d6, a6] = groups;
    let v4 = CompiledFamily {
        deny: build_trie(d4, Action::Deny, policy, &mut dedup, &mut lists)?,
        allow: build_trie(a4, Action::Allow, policy, &mut dedup, &mut lists)?,
    };
    let v6 = CompiledFamily {
        deny: build_trie(d6, Action::Deny, policy, &mut dedup, &mut lists)?,
        allow: build_trie(a6, Action::Allow, policy, &mut dedup, &mut lists)?,
    };
    let countries = policy.countries();
    let (geo4, geo6) = match geo {
        _ if !policy.references_countries() => (Vec::new(), Vec::new()),
        None => {
            let countries = policy.geo_countries().iter().map(|c| country_str(c).to_owned()).collect();
            return Err(CompileError::GeoDatabaseRequired { countries });
        }
        Some(db) => build_geo(policy, db, &mut dedup, &mut lists)?,
    };
    let names = build_names(policy, &mut dedup, &mut lists)?;
    if lists.len() > MAX_LISTS as usize {
        return Err(CompileError::TooManyLists { lists: lists.len(), max: MAX_LISTS as usize });
    }
    let (encrypt4, encrypt6) = build_peers(policy)?;
    let (home4, home6) = build_home(policy, geo)?;
    let budgets = build_budgets(policy, geo)?;
    Ok(Compiled {
        default_action: if policy.default_action == Action::Allow { ACTION_ALLOW } else { ACTION_DENY },
        mode: if policy.mode == Mode::Audit { MODE_AUDIT } else { MODE_ENFORCE },
        v4,
        v6,
        lists,
        unknown_action: match policy.unknown_country {
            None => UNKNOWN_DEFAULT,
            Some(Action::Deny) => UNKNOWN_DENY,
            Some(Action::Allow) => UNKNOWN_ALLOW,
        },
        geo4,
        geo6,
        countries,
        encrypt4,
        encrypt6,
        home4,
        home6,
        cross_border: policy.cross_border.is_some(),
        raw_policy: policy.raw_sockets == RawSockets::Policy,
        names,
        dns: policy.uses_dns(),
        resolvers: policy.dns.resolvers.clone(),
        doh: if policy.uses_dns() { doh_endpoints(policy) } else { Vec::new() },
        ttl_floor: policy.dns.min_ttl_secs,
        budgets,
        lookup: OnceLock::new(),
    })
}

/// Compiles the ingress rules of `policy` into the same kernel form as [`compile`] (so the
/// kernel reuses its tries): the trie address is a connection's source, the port the
/// workload's own port. It compiles [`Policy::ingress_policy`]: `from.peers: true` is expanded to
/// `spec.peers`, `from.workloads` to the addresses `workloads` returns for its selector (none:
/// the rule matches nothing), the default is `defaultIngress`, the mode the policy's. Ingress
/// rules naming countries need `geo`. For a policy that does not enforce ingress
/// ([`Policy::enforces_ingress`]) the result allows everything.
pub fn compile_ingress(
    policy: &Policy,
    geo: Option<&GeoDb>,
    workloads: &dyn Fn(&Selector) -> Vec<IpNet>,
) -> Result<Compiled, CompileError> {
    compile(&policy.ingress_policy(workloads), geo)
}
