//! Conflicting concurrent writes: finding them, describing them, resolving them.

use std::collections::{BTreeMap, HashMap};

use automerge::{
    Automerge, ChangeHash, ObjId, ObjType, Patch, PatchAction, Prop, ReadDoc, Value,
    transaction::Transactable,
};
use serde::Serialize;
use serde_json::Value as Json;

use super::ModelError;
use super::depth::{MAX_NESTING_DEPTH, nests_deeper_than};
use super::json::too_deep;
use super::ops::{existing_place, set};
use super::pointer::push_token;
use super::tree::{Tree, scalar_to_json};

/// One of the values concurrently written at a conflicted place.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConflictValue {
    /// The value, as JSON (an object value shown whole).
    pub value: Json,
    /// The actor that wrote it, as hex.
    pub actor: String,
    /// The change that wrote it (`None` only for a write still in an open transaction).
    pub change: Option<ChangeHash>,
    /// The time of that change, in ms, as its author's device stated it (0 if unknown).
    pub time: i64,
    /// Whether this is the value automerge shows (what `get` returns).
    pub winner: bool,
}

/// A map key or list element holding more than one concurrently written value.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Conflict {
    /// Where, as a JSON pointer.
    pub path: String,
    /// All values there, in automerge's order (the winner last).
    pub values: Vec<ConflictValue>,
}

/// Every conflict in the document, by a full scan of the visible tree (maps in key order).
///
/// Conflicts inside a losing object value are not reported: no pointer addresses them,
/// and resolving the outer conflict discards them or brings them into view.
pub fn conflicts(doc: &Automerge) -> Vec<Conflict> {
    let mut finder = Finder::new(doc);
    let mut out = Vec::new();
    finder.scan(&ObjId::Root, ObjType::Map, String::new(), 0, &mut out);
    out
}

/// The conflicts at the places `patches` flagged (`PutMap`/`PutSeq`/`Insert` with
/// `conflict`, and `PatchAction::Conflict`), looked up in the current `doc`: cheap after
/// a merge, where a full [`conflicts`] scan is not. Places no longer conflicted or no
/// longer visible are skipped; the result is sorted by path and has no duplicates.
pub fn conflicts_from_patches(doc: &Automerge, patches: &[Patch]) -> Vec<Conflict> {
    let mut places: Vec<(ObjId, Prop)> = Vec::new();
    for patch in patches {
        match &patch.action {
            PatchAction::PutMap {
                key,
                conflict: true,
                ..
            } => places.push((patch.obj.clone(), Prop::Map(key.clone()))),
            PatchAction::PutSeq {
                index,
                conflict: true,
                ..
            } => places.push((patch.obj.clone(), Prop::Seq(*index))),
            PatchAction::Insert { index, values } => {
                for (offset, (_, _, conflict)) in values.iter().enumerate() {
                    if *conflict {
                        places.push((patch.obj.clone(), Prop::Seq(index + offset)));
                    }
                }
            }
            PatchAction::Conflict { prop } => places.push((patch.obj.clone(), prop.clone())),
            _ => {}
        }
    }
    let mut finder = Finder::new(doc);
    let mut found = BTreeMap::new();
    for (obj, prop) in places {
        let Some(path) = pointer_to(doc, &obj, &prop) else {
            continue;
        };
        if found.contains_key(&path) {
            continue;
        }
        if let Some(conflict) = finder.conflict_at(&obj, prop, path.clone()) {
            found.insert(path, conflict);
        }
    }
    found.into_values().collect()
}

/// Resolves the conflict at `path` by writing `value` there as one new value that
/// supersedes every current one (a new object for objects, so nothing of the losers is
/// merged in). To keep a losing value, pass that value (from [`ConflictValue::value`]).
///
/// # Errors
/// [`ModelError::PathNotFound`] / [`ModelError::IndexOutOfBounds`] if nothing is at `path`,
/// or any error of [`crate::model::EditOp::Set`].
pub fn resolve(tx: &mut impl Transactable, path: &str, value: &Json) -> Result<(), ModelError> {
    existing_place(tx, path)?;
    set(tx, path, value)
}

/// The JSON pointer of `prop` in `obj`, if `obj` is visible.
pub(super) fn pointer_to(
    doc: &(impl automerge::ReadDoc + ?Sized),
    obj: &ObjId,
    prop: &Prop,
) -> Option<String> {
    let mut pointer = String::new();
    if *obj != ObjId::Root {
        for (_, step) in doc.parents(obj).ok()?.visible_path()? {
            pointer = push_prop(&pointer, &step);
        }
    }
    Some(push_prop(&pointer, prop))
}

fn push_prop(pointer: &str, prop: &Prop) -> String {
    match prop {
        Prop::Map(key) => push_token(pointer, key),
        Prop::Seq(index) => format!("{pointer}/{index}"),
    }
}

/// A child of a scanned object: its prop, whether it is conflicted, and the winning value's
/// object id and type if it is an object.
type Child = (Prop, bool, Option<(ObjType, ObjId)>);

/// Looks up conflicts, caching change times by hash for the length of one call.
struct Finder<'a> {
    doc: &'a Automerge,
    times: HashMap<ChangeHash, i64>,
}

impl<'a> Finder<'a> {
    fn new(doc: &'a Automerge) -> Self {
        Self {
            doc,
            times: HashMap::new(),
        }
    }

    fn scan(
        &mut self,
        obj: &ObjId,
        obj_type: ObjType,
        pointer: String,
        depth: usize,
        out: &mut Vec<Conflict>,
    ) {
        if depth > MAX_NESTING_DEPTH {
            return;
        }
        let children: Vec<Child> = match obj_type {
            ObjType::Map | ObjType::Table => self
                .doc
                .map_range(obj, ..)
                .map(|item| {
                    (
                        Prop::Map(item.key.to_string()),
                        item.conflict,
                        child_object(&item.value, item.id()),
                    )
                })
                .collect(),
            ObjType::List => self
                .doc
                .list_range(obj, ..)
                .map(|item| {
                    (
                        Prop::Seq(item.index),
                        item.conflict,
                        child_object(&item.value, item.id()),
                    )
                })
                .collect(),
            ObjType::Text => Vec::new(),
        };
        for (prop, conflicted, child) in children {
            let path = push_prop(&pointer, &prop);
            if conflicted && let Some(conflict) = self.conflict_at(obj, prop, path.clone()) {
                out.push(conflict);
            }
            if let Some((child_type, child_id)) = child {
                self.scan(&child_id, child_type, path, depth + 1, out);
            }
        }
    }

    fn conflict_at(&mut self, obj: &ObjId, prop: Prop, path: String) -> Option<Conflict> {
        let all = self.doc.get_all(obj, prop.clone()).ok()?;
        if all.len() < 2 {
            return None;
        }
        let winner = self.doc.get(obj, prop).ok().flatten().map(|(_, id)| id);
        let values = all
            .into_iter()
            .map(|(value, id)| {
                let change = self.doc.hash_for_opid(&id);
                ConflictValue {
                    value: self.value_json(&value, &id),
                    actor: match &id {
                        ObjId::Id(_, actor, _) => actor.to_hex_string(),
                        ObjId::Root => String::new(),
                    },
                    time: change.map_or(0, |hash| self.time_of(hash)),
                    change,
                    winner: winner.as_ref() == Some(&id),
                }
            })
            .collect();
        Some(Conflict { path, values })
    }

    fn value_json(&self, value: &Value<'_>, id: &ObjId) -> Json {
        match value {
            Value::Scalar(s) => scalar_to_json(s),
            Value::Object(_) if nests_deeper_than(self.doc, id, None, MAX_NESTING_DEPTH) => {
                too_deep()
            }
            Value::Object(_) => ReadDoc::hydrate(self.doc, id, None)
                .map_or(Json::Null, |h| Tree::from_hydrate(&h).to_json()),
        }
    }

    fn time_of(&mut self, hash: ChangeHash) -> i64 {
        let doc = self.doc;
        *self.times.entry(hash).or_insert_with(|| {
            doc.get_change_meta_by_hash(&hash)
                .map_or(0, |meta| meta.timestamp)
        })
    }
}

fn child_object(value: &automerge::ValueRef<'_>, id: ObjId) -> Option<(ObjType, ObjId)> {
    match value {
        automerge::ValueRef::Object(t) => Some((*t, id)),
        automerge::ValueRef::Scalar(_) => None,
    }
}

#[cfg(test)]
mod tests;
