//! Import cycles. Each module with children has a graph of its own code and its children; an
//! import between two modules is an edge in the graph of their closest common ancestor,
//! between the two of its members that contain them (its own code when one module is the
//! ancestor itself). A cycle is a cycle in one of these graphs: at the top level `a -> b -> a`
//! for `crate::a::x` using `crate::b::y` and back, inside a directory
//! `geo::reader -> geo::table -> geo::reader`, or `geo -> geo::reader -> geo` for a child using
//! its parent's items while the parent uses the child.
//!
//! Elementary cycles multiply quickly once a few modules are tangled (one module using the
//! crate root closes a cycle through every path from the root to it), so the report shows, for
//! each import that is part of some cycle, the shortest cycle through it; every elementary
//! cycle can be listed too.

use std::collections::BTreeMap;

use super::tree::{Import, ModPath};

/// A member of one module's graph: the module's own code (`None`) or one of its children.
pub(super) type Member = Option<String>;

/// The edges of one module's graph, each with the imports that make it.
pub(super) type Level<'a> = BTreeMap<(Member, Member), Vec<&'a Import>>;

/// A cycle in the graph of `module`, as members in order (the first is not repeated at the
/// end), with the first import making each edge.
#[derive(Debug)]
pub(super) struct Cycle<'a> {
    pub module: ModPath,
    pub members: Vec<Member>,
    pub edges: Vec<&'a Import>,
}

/// The most elementary cycles enumerated; more are not looked for.
pub(super) const MAX_CYCLES: usize = 10_000;

/// The imports grouped by the module whose graph they are an edge of.
pub(super) fn levels(imports: &[Import]) -> BTreeMap<ModPath, Level<'_>> {
    let mut levels: BTreeMap<ModPath, Level<'_>> = BTreeMap::new();
    for import in imports {
        let common = import.from.iter().zip(&import.to).take_while(|(a, b)| a == b).count();
        let member = |path: &ModPath| path.get(common).cloned();
        let edge = (member(&import.from), member(&import.to));
        if edge.0 == edge.1 {
            continue;
        }
        let level = levels.entry(import.from[..common].to_vec()).or_default();
        level.entry(edge).or_default().push(import);
    }
    levels
}

/// One level as a graph over member indices.
struct Graph<'l, 'a> {
    module: &'l ModPath,
    level: &'l Level<'a>,
    members: Vec<&'l Member>,
    next: Vec<Vec<usize>>,
}

impl<'l, 'a> Graph<'l, 'a> {
    fn new(module: &'l ModPath, level: &'l Level<'a>) -> Self {
        let mut members: Vec<&Member> = level.keys().flat_map(|(a, b)| [a, b]).collect();
        members.sort();
        members.dedup();
        let mut next: Vec<Vec<usize>> = vec![Vec::new(); members.len()];
        for (a, b) in level.keys() {
            let index = |m: &Member| members.binary_search(&m).expect("member of the level");
            next[index(a)].push(index(b));
        }
        Graph { module, level, members, next }
    }

    /// The cycle through these member indices, in order.
    fn cycle(&self, indices: &[usize]) -> Cycle<'a> {
        let members: Vec<Member> = indices.iter().map(|&i| self.members[i].clone()).collect();
        let edges = (0..members.len())
            .map(|k| self.level[&(members[k].clone(), members[(k + 1) % members.len()].clone())][0])
            .collect();
        Cycle { module: self.module.clone(), members, edges }
    }

    /// The shortest path from `from` to `to` (both included), if any.
    fn path(&self, from: usize, to: usize) -> Option<Vec<usize>> {
        let mut previous: Vec<Option<usize>> = vec![None; self.members.len()];
        let mut queue = std::collections::VecDeque::from([from]);
        let mut seen = vec![false; self.members.len()];
        seen[from] = true;
        while let Some(n) = queue.pop_front() {
            if n == to {
                let mut path = vec![to];
                while let Some(p) = previous[*path.last().expect("not empty")] {
                    path.push(p);
                }
                path.reverse();
                return Some(path);
            }
            for &m in &self.next[n] {
                if !seen[m] {
                    seen[m] = true;
                    previous[m] = Some(n);
                    queue.push_back(m);
                }
            }
        }
        None
    }
}

/// For every import that is part of a cycle, the shortest cycle through it; each cycle once.
pub(super) fn shortest_cycles<'a>(levels: &BTreeMap<ModPath, Level<'a>>) -> Vec<Cycle<'a>> {
    let mut out = Vec::new();
    for (module, level) in levels {
        let graph = Graph::new(module, level);
        let mut found: Vec<Vec<usize>> = Vec::new();
        for (a, targets) in graph.next.iter().enumerate() {
            for &b in targets {
                let Some(mut cycle) = graph.path(b, a) else { continue };
                // a -> b -> ... -> a, as [a, b, ...], started at its first member.
                cycle.pop();
                cycle.insert(0, a);
                let first = (0..cycle.len()).min_by_key(|&i| cycle[i]).expect("not empty");
                cycle.rotate_left(first);
                if !found.contains(&cycle) {
                    found.push(cycle);
                }
            }
        }
        found.sort();
        out.extend(found.iter().map(|c| graph.cycle(c)));
    }
    out
}

/// Every elementary cycle of every level (at most `limit`), and whether some were left out.
pub(super) fn elementary_cycles<'a>(
    levels: &BTreeMap<ModPath, Level<'a>>,
    limit: usize,
) -> (Vec<Cycle<'a>>, bool) {
    let mut out = Vec::new();
    let mut truncated = false;
    for (module, level) in levels {
        let graph = Graph::new(module, level);
        for start in 0..graph.members.len() {
            let mut found = Vec::new();
            search(&graph.next, start, &mut vec![start], &mut found, &mut truncated, limit - out.len());
            out.extend(found.iter().map(|c| graph.cycle(c)));
        }
    }
    (out, truncated)
}

/// Depth-first search for the cycles through `start` whose other members all come after it
/// (so each cycle is found once, from its first member).
fn search(
    next: &[Vec<usize>],
    start: usize,
    path: &mut Vec<usize>,
    found: &mut Vec<Vec<usize>>,
    truncated: &mut bool,
    room: usize,
) {
    let last = *path.last().expect("path starts at start");
    for &n in &next[last] {
        if *truncated {
            return;
        }
        if n == start {
            if found.len() >= room {
                *truncated = true;
                return;
            }
            found.push(path.clone());
        } else if n > start && !path.contains(&n) {
            path.push(n);
            search(next, start, path, found, truncated, room);
            path.pop();
        }
    }
}

/// `crate`, `geo` (a module's own code) or `geo::reader` (a member of `geo`'s graph).
pub(super) fn name(module: &ModPath, member: &Member) -> String {
    let mut parts: Vec<&str> = module.iter().map(String::as_str).collect();
    if let Some(child) = member {
        parts.push(child);
    }
    if parts.is_empty() {
        "crate".to_owned()
    } else {
        parts.join("::")
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn import(from: &str, to: &str) -> Import {
        let path = |s: &str| s.split("::").filter(|p| !p.is_empty()).map(str::to_owned).collect();
        Import { from: path(from), to: path(to), file: PathBuf::from("f.rs"), line: 1 }
    }

    fn described(cycles: &[Cycle<'_>]) -> Vec<String> {
        let text =
            |c: &Cycle<'_>| c.members.iter().map(|m| name(&c.module, m)).collect::<Vec<_>>().join(" -> ");
        cycles.iter().map(text).collect()
    }

    fn elementary(imports: &[Import]) -> Vec<String> {
        let (cycles, truncated) = elementary_cycles(&levels(imports), MAX_CYCLES);
        assert!(!truncated);
        described(&cycles)
    }

    fn shortest(imports: &[Import]) -> Vec<String> {
        described(&shortest_cycles(&levels(imports)))
    }

    #[test]
    fn imports_land_in_the_closest_common_level() {
        let imports = [import("a::x", "b::y"), import("geo", "geo::reader"), import("geo::reader::z", "geo")];
        let levels = levels(&imports);
        let keys: Vec<String> = levels
            .iter()
            .flat_map(|(m, l)| l.keys().map(move |(a, b)| format!("{} -> {}", name(m, a), name(m, b))))
            .collect();
        assert_eq!(keys, ["a -> b", "geo -> geo::reader", "geo::reader -> geo"]);
    }

    #[test]
    fn every_elementary_cycle_once() {
        let imports = [
            import("a", "b"),
            import("b", "a"),
            import("b", "c"),
            import("c", "a"),
            import("d", "a"),
            import("geo", "geo::table"),
            import("geo::table", "geo"),
        ];
        let expected = ["a -> b", "a -> b -> c", "geo -> geo::table"];
        assert_eq!(elementary(&imports), expected);
        assert_eq!(shortest(&imports), expected);
    }

    #[test]
    fn the_shortest_cycle_through_each_import() {
        let pairs = [("a", "b"), ("b", "a"), ("b", "c"), ("c", "b"), ("a", "c"), ("c", "a")];
        let imports: Vec<Import> = pairs.iter().map(|(a, b)| import(a, b)).collect();
        assert_eq!(elementary(&imports), ["a -> b", "a -> b -> c", "a -> c", "a -> c -> b", "b -> c"]);
        assert_eq!(shortest(&imports), ["a -> b", "a -> c", "b -> c"]);
    }

    #[test]
    fn elementary_cycles_stop_at_the_limit() {
        let pairs = [("a", "b"), ("b", "a"), ("b", "c"), ("c", "b"), ("a", "c"), ("c", "a")];
        let imports: Vec<Import> = pairs.iter().map(|(a, b)| import(a, b)).collect();
        let (cycles, truncated) = elementary_cycles(&levels(&imports), 2);
        assert_eq!((cycles.len(), truncated), (2, true));
    }

    #[test]
    fn no_cycles_in_a_tree_of_one_way_imports() {
        let imports = [import("", "a"), import("a", "b"), import("b::c", "b::d"), import("b", "b::c")];
        assert!(elementary(&imports).is_empty());
        assert!(shortest(&imports).is_empty());
    }
}
