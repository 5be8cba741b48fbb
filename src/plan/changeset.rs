//! The changeset: operations and the edges between them, a DAG. Serialised as is in saved
//! plans; the graph (petgraph) is rebuilt from the edge list when it is walked, so the file
//! format does not depend on petgraph's.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::Direction;
use serde::{Deserialize, Serialize};

use super::drift::Drift;
use super::operation::Operation;

/// `from` must finish before `to` starts. Both are operation ids.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Edge {
    pub from: String,
    pub to: String,
}

/// A changeset that cannot be walked: only possible for a hand-edited or corrupt plan file,
/// since the planner builds acyclic graphs over its own ids.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidChangeset {
    #[error("edge {from} → {to} names an operation that is not in the changeset")]
    UnknownOperation { from: String, to: String },
    #[error("operation id `{0}` appears twice")]
    DuplicateId(String),
    #[error("the operations form a cycle through {0}")]
    Cycle(String),
}

/// The plan of one stage: operations (in a stable, readable order: apps by name, and within
/// an app in dependency order) and edges.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Changeset {
    /// The stage it applies to.
    pub stage: String,
    pub operations: Vec<Operation>,
    pub edges: Vec<Edge>,
    /// Whether it was planned against what the runtime runs (`plan --refresh`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub refreshed: bool,
    /// Apps whose live service drifted from recorded state (`--refresh` only); their
    /// operations put them back.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drift: Vec<Drift>,
}

impl Changeset {
    /// No operations: the stage matches its recorded state.
    pub fn is_empty(&self) -> bool {
        self.operations.is_empty()
    }

    /// The operation with this id.
    pub fn operation(&self, id: &str) -> Option<&Operation> {
        // Compare the app first: `id()` allocates, and the apply engine looks up every
        // operation of a large changeset.
        let app = id.split('/').next().unwrap_or(id);
        self.operations.iter().find(|op| op.app() == app && op.id() == id)
    }

    /// Ids of the operations that must finish before `id` starts.
    pub fn dependencies<'a>(&'a self, id: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.edges.iter().filter(move |e| e.to == id).map(|e| e.from.as_str())
    }

    /// The operations as a petgraph graph; node weights index into `operations`.
    pub fn graph(&self) -> Result<DiGraph<usize, ()>, InvalidChangeset> {
        let mut graph = DiGraph::with_capacity(self.operations.len(), self.edges.len());
        let mut index: HashMap<String, NodeIndex> = HashMap::with_capacity(self.operations.len());
        for (i, op) in self.operations.iter().enumerate() {
            let id = op.id();
            if index.insert(id.clone(), graph.add_node(i)).is_some() {
                return Err(InvalidChangeset::DuplicateId(id));
            }
        }
        for e in &self.edges {
            match (index.get(&e.from), index.get(&e.to)) {
                (Some(&a), Some(&b)) => {
                    graph.add_edge(a, b, ());
                }
                _ => return Err(InvalidChangeset::UnknownOperation { from: e.from.clone(), to: e.to.clone() }),
            }
        }
        Ok(graph)
    }

    /// The operations in an order that respects every edge. Among operations that are ready
    /// at once, the one listed first goes first, so the order is deterministic and reads like
    /// the plan.
    pub fn apply_order(&self) -> Result<Vec<&Operation>, InvalidChangeset> {
        let graph = self.graph()?;
        let mut waiting: Vec<usize> =
            graph.node_indices().map(|n| graph.neighbors_directed(n, Direction::Incoming).count()).collect();
        let mut ready: BinaryHeap<Reverse<usize>> =
            waiting.iter().enumerate().filter(|(_, &w)| w == 0).map(|(i, _)| Reverse(i)).collect();
        let mut order = Vec::with_capacity(self.operations.len());
        while let Some(Reverse(i)) = ready.pop() {
            order.push(&self.operations[graph[NodeIndex::new(i)]]);
            for next in graph.neighbors_directed(NodeIndex::new(i), Direction::Outgoing) {
                waiting[next.index()] -= 1;
                if waiting[next.index()] == 0 {
                    ready.push(Reverse(next.index()));
                }
            }
        }
        if order.len() < self.operations.len() {
            let stuck = waiting.iter().position(|&w| w > 0).unwrap_or(0);
            return Err(InvalidChangeset::Cycle(self.operations[stuck].id()));
        }
        Ok(order)
    }

    /// The names of the apps the changeset touches, sorted.
    pub fn apps(&self) -> Vec<&str> {
        let mut apps: Vec<&str> = self.operations.iter().map(Operation::app).collect();
        apps.sort_unstable();
        apps.dedup();
        apps
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prune(app: &str) -> Operation {
        Operation::PruneRevisions { app: app.into(), ids: vec![] }
    }

    fn edge(from: &str, to: &str) -> Edge {
        Edge { from: from.into(), to: to.into() }
    }

    #[test]
    fn apply_order_respects_edges_and_list_order() {
        let cs = Changeset {
            stage: "dev".into(),
            operations: vec![prune("a"), prune("b"), prune("c")],
            edges: vec![edge("c/prune", "a/prune")],
            ..Changeset::default()
        };
        let ids: Vec<String> = cs.apply_order().unwrap().iter().map(|o| o.id()).collect();
        assert_eq!(ids, ["b/prune", "c/prune", "a/prune"]);
    }

    #[test]
    fn cycles_and_unknown_ids_are_refused() {
        let mut cs = Changeset {
            stage: "dev".into(),
            operations: vec![prune("a"), prune("b")],
            edges: vec![edge("a/prune", "b/prune"), edge("b/prune", "a/prune")],
            ..Changeset::default()
        };
        assert!(matches!(cs.apply_order(), Err(InvalidChangeset::Cycle(_))));
        cs.edges = vec![edge("a/prune", "zz/prune")];
        assert!(matches!(cs.apply_order(), Err(InvalidChangeset::UnknownOperation { .. })));
        cs.edges.clear();
        cs.operations.push(prune("a"));
        assert!(matches!(cs.apply_order(), Err(InvalidChangeset::DuplicateId(_))));
    }
}
