//! Edit operations addressed by JSON pointers, as an API or CLI receives them.

use automerge::{ObjId, ObjType, Prop, ReadDoc, ScalarValue, Value, transaction::Transactable};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use super::ModelError;
use super::pointer::{Pointer, Slot, resolve_container, slot, type_name};
use super::reconcile::{Mode, reconcile_root};
use super::tree::{Place, Tree, create};

/// One edit, addressed by an RFC 6901 JSON pointer (`""` is the root, `~0` is `~`, `~1` is
/// `/`, a list element is its index, `-` is one past the end of a list).
///
/// Deserialises from `{"op": "set", "path": "/a", "value": 1}` and so on (tag `op`,
/// snake_case names and fields). Values follow the mapping in [`crate::model`]: strings
/// become text, `{"$counter": n}` creates a counter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum EditOp {
    /// Writes `value` at `path`: a map key (created or overwritten), an existing list
    /// index (overwritten), `-` (appended). `""` makes the whole root equal to `value`
    /// (an object) with minimal edits. Objects are written new, superseding concurrent
    /// values at that place.
    Set {
        /// Where to write.
        path: String,
        /// What to write.
        value: Json,
    },
    /// Deletes a map key or a list element.
    Delete {
        /// What to delete.
        path: String,
    },
    /// Inserts `values` into a list before the element at `path` (an index up to the
    /// length, or `-` to append).
    Insert {
        /// The list position.
        path: String,
        /// The values, inserted in order.
        values: Vec<Json>,
    },
    /// Removes `count` list elements starting at the index `path` ends with.
    Remove {
        /// The first element to remove.
        path: String,
        /// How many elements to remove.
        count: usize,
    },
    /// Splices the text object at `path`: deletes `delete` units from `index`, then inserts
    /// `insert` there. Units are the document's text encoding (Unicode code points for
    /// `Automerge::new()` outside wasm).
    Splice {
        /// The text object.
        path: String,
        /// Where the splice starts.
        index: usize,
        /// How many units to delete.
        delete: usize,
        /// What to insert.
        insert: String,
    },
    /// Adds `by` (possibly negative) to the counter at `path`. Create counters with
    /// `Set` and `{"$counter": n}`.
    Increment {
        /// The counter.
        path: String,
        /// The amount to add.
        by: i64,
    },
}

/// Applies `ops` in order inside the caller's transaction.
///
/// # Errors
/// The first failing operation's error. Earlier operations of the batch stay in the
/// transaction, so on error the caller must roll the transaction back (drop it or call
/// `rollback`) to leave the document unchanged.
pub fn apply_ops(tx: &mut impl Transactable, ops: &[EditOp]) -> Result<(), ModelError> {
    ops.iter().try_for_each(|op| apply_op(tx, op))
}

fn apply_op(tx: &mut impl Transactable, op: &EditOp) -> Result<(), ModelError> {
    match op {
        EditOp::Set { path, value } => set(tx, path, value),
        EditOp::Delete { path } => delete(tx, path),
        EditOp::Insert { path, values } => insert(tx, path, values),
        EditOp::Remove { path, count } => remove(tx, path, *count),
        EditOp::Splice {
            path,
            index,
            delete,
            insert,
        } => splice(tx, path, *index, *delete, insert),
        EditOp::Increment { path, by } => increment(tx, path, *by),
    }
}

/// Writes `value` at `path` (the semantics of [`EditOp::Set`]).
pub(crate) fn set(tx: &mut impl Transactable, path: &str, value: &Json) -> Result<(), ModelError> {
    let pointer = Pointer::parse(path)?;
    let tree = Tree::from_json(value, path)?;
    let Some((parent, last)) = pointer.split_last() else {
        return reconcile_root(tx, &tree, Mode::Json);
    };
    let (obj, obj_type) = resolve_container(tx, &pointer, parent)?;
    match slot(obj_type, last, path)? {
        Slot::Key(key) => create(tx, &obj, Place::Key(key), &tree),
        Slot::Index(index) => {
            check_index(tx, &obj, path, index)?;
            create(tx, &obj, Place::Put(index), &tree)
        }
        Slot::End => create(tx, &obj, Place::Insert(tx.length(&obj)), &tree),
    }
}

fn delete(tx: &mut impl Transactable, path: &str) -> Result<(), ModelError> {
    let (obj, prop) = existing_place(tx, path)?;
    tx.delete(&obj, prop)?;
    Ok(())
}

fn insert(tx: &mut impl Transactable, path: &str, values: &[Json]) -> Result<(), ModelError> {
    let trees = values
        .iter()
        .enumerate()
        .map(|(i, v)| Tree::from_json(v, &format!("{path}/{i}")))
        .collect::<Result<Vec<_>, _>>()?;
    let (obj, start) = list_position(tx, path)?;
    for (offset, tree) in trees.iter().enumerate() {
        create(tx, &obj, Place::Insert(start + offset), tree)?;
    }
    Ok(())
}

fn remove(tx: &mut impl Transactable, path: &str, count: usize) -> Result<(), ModelError> {
    let (obj, start) = list_position(tx, path)?;
    let len = tx.length(&obj);
    match start.checked_add(count) {
        Some(end) if end <= len => {}
        _ => {
            return Err(ModelError::IndexOutOfBounds {
                path: path.to_owned(),
                index: last_touched(start, count),
                len,
            });
        }
    }
    for _ in 0..count {
        tx.delete(&obj, start)?;
    }
    Ok(())
}

fn splice(
    tx: &mut impl Transactable,
    path: &str,
    index: usize,
    delete: usize,
    insert: &str,
) -> Result<(), ModelError> {
    let not_text = || ModelError::NotAText {
        path: path.to_owned(),
    };
    if path.is_empty() {
        return Err(not_text());
    }
    let (obj, prop) = existing_place(tx, path)?;
    let Some((Value::Object(ObjType::Text), text)) = tx.get(&obj, prop)? else {
        return Err(not_text());
    };
    let len = tx.length(&text);
    let in_bounds = index.checked_add(delete).is_some_and(|end| end <= len);
    let delete_units = isize::try_from(delete).ok().filter(|_| in_bounds);
    let Some(delete_units) = delete_units else {
        return Err(ModelError::IndexOutOfBounds {
            path: path.to_owned(),
            index: last_touched(index, delete),
            len,
        });
    };
    tx.splice_text(&text, index, delete_units, insert)?;
    Ok(())
}

fn increment(tx: &mut impl Transactable, path: &str, by: i64) -> Result<(), ModelError> {
    let not_counter = || ModelError::NotACounter {
        path: path.to_owned(),
    };
    if path.is_empty() {
        return Err(not_counter());
    }
    let (obj, prop) = existing_place(tx, path)?;
    let current = match tx.get(&obj, prop.clone())? {
        Some((Value::Scalar(s), _)) => match s.as_ref() {
            ScalarValue::Counter(c) => i64::from(c),
            _ => return Err(not_counter()),
        },
        _ => return Err(not_counter()),
    };
    if !current
        .checked_add(by)
        .is_some_and(|next| super::counter_allowed(current, next))
    {
        return Err(ModelError::CounterOverflow {
            path: path.to_owned(),
        });
    }
    tx.increment(&obj, prop, by)?;
    Ok(())
}

/// The container and prop of an existing value at a non-root `path`.
pub(crate) fn existing_place(doc: &impl ReadDoc, path: &str) -> Result<(ObjId, Prop), ModelError> {
    let pointer = Pointer::parse(path)?;
    let Some((parent, last)) = pointer.split_last() else {
        return Err(ModelError::InvalidPointer {
            path: String::new(),
            reason: "the document root is not a key or element of anything",
        });
    };
    let (obj, obj_type) = resolve_container(doc, &pointer, parent)?;
    match slot(obj_type, last, path)? {
        Slot::Key(key) => {
            if doc.get(&obj, key)?.is_none() {
                return Err(ModelError::PathNotFound {
                    path: path.to_owned(),
                });
            }
            Ok((obj, Prop::Map(key.to_owned())))
        }
        Slot::Index(index) => {
            check_index(doc, &obj, path, index)?;
            Ok((obj, Prop::Seq(index)))
        }
        Slot::End => Err(ModelError::InvalidPointer {
            path: path.to_owned(),
            reason: "'-' names no existing element",
        }),
    }
}

/// The list and insert position (`0..=len`) that `path` names.
fn list_position(doc: &impl ReadDoc, path: &str) -> Result<(ObjId, usize), ModelError> {
    let pointer = Pointer::parse(path)?;
    let Some((parent, last)) = pointer.split_last() else {
        return Err(ModelError::WrongType {
            path: String::new(),
            expected: "list",
            found: "map",
        });
    };
    let (obj, obj_type) = resolve_container(doc, &pointer, parent)?;
    if obj_type != ObjType::List {
        return Err(ModelError::WrongType {
            path: pointer.prefix(parent.len()),
            expected: "list",
            found: type_name(obj_type),
        });
    }
    let len = doc.length(&obj);
    match slot(obj_type, last, path)? {
        Slot::Index(index) if index <= len => Ok((obj, index)),
        Slot::Index(index) => Err(ModelError::IndexOutOfBounds {
            path: path.to_owned(),
            index,
            len,
        }),
        Slot::End => Ok((obj, len)),
        Slot::Key(_) => Err(ModelError::WrongType {
            path: pointer.prefix(parent.len()),
            expected: "list",
            found: "map",
        }),
    }
}

fn check_index(
    doc: &impl ReadDoc,
    obj: &ObjId,
    path: &str,
    index: usize,
) -> Result<(), ModelError> {
    let len = doc.length(obj);
    if index < len {
        Ok(())
    } else {
        Err(ModelError::IndexOutOfBounds {
            path: path.to_owned(),
            index,
            len,
        })
    }
}

/// The last index a range of `count` elements from `start` touches (`start` if empty).
fn last_touched(start: usize, count: usize) -> usize {
    start.saturating_add(count.saturating_sub(1))
}

#[cfg(test)]
mod tests;
