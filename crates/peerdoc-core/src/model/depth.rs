//! A bound on how deeply objects nest, checked without recursion.
//!
//! automerge stores objects flat, so a peer can send a document nested thousands of
//! levels deep at no cost to itself; walking such a document recursively (automerge's
//! `hydrate`, our own scans) would overflow the stack and abort the process. Every
//! recursive walk in this module first asks [`nests_deeper_than`], which walks with an
//! explicit stack.

use automerge::{ChangeHash, ObjId, ObjType, ReadDoc, ValueRef};

/// The deepest nesting the model walks. Venue documents nest a handful of levels.
pub const MAX_NESTING_DEPTH: usize = 128;

/// Whether objects below `obj` (at `heads`, or now) nest more than `max` levels deep.
pub fn nests_deeper_than(
    doc: &impl ReadDoc,
    obj: &ObjId,
    heads: Option<&[ChangeHash]>,
    max: usize,
) -> bool {
    let mut stack: Vec<(ObjId, usize)> = vec![(obj.clone(), 0)];
    while let Some((id, depth)) = stack.pop() {
        if depth > max {
            return true;
        }
        let object_type = doc.object_type(&id).ok();
        let mut push = |value: &ValueRef<'_>, child: ObjId| {
            if let ValueRef::Object(t) = value
                && *t != ObjType::Text
            {
                stack.push((child, depth + 1));
            }
        };
        match object_type {
            Some(ObjType::Map | ObjType::Table) => match heads {
                Some(h) => doc
                    .map_range_at(&id, .., h)
                    .for_each(|item| push(&item.value, item.id())),
                None => doc
                    .map_range(&id, ..)
                    .for_each(|item| push(&item.value, item.id())),
            },
            Some(ObjType::List) => match heads {
                Some(h) => doc
                    .list_range_at(&id, .., h)
                    .for_each(|item| push(&item.value, item.id())),
                None => doc
                    .list_range(&id, ..)
                    .for_each(|item| push(&item.value, item.id())),
            },
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use automerge::transaction::Transactable;
    use automerge::{Automerge, ROOT};

    fn nested(depth: usize) -> Automerge {
        let mut doc = Automerge::new();
        let mut tx = doc.transaction();
        let mut obj = ROOT;
        for i in 0..depth {
            obj = if i % 2 == 0 {
                tx.put_object(&obj, "k", ObjType::Map).unwrap()
            } else {
                let list = tx.put_object(&obj, "l", ObjType::List).unwrap();
                tx.insert_object(&list, 0, ObjType::Map).unwrap()
            };
        }
        tx.commit();
        doc
    }

    #[test]
    fn measures_depth_without_recursion() {
        let shallow = nested(10);
        assert!(!nests_deeper_than(&shallow, &ROOT, None, 20));
        assert!(nests_deeper_than(&shallow, &ROOT, None, 5));
        let heads = shallow.get_heads();
        assert!(nests_deeper_than(&shallow, &ROOT, Some(&heads), 5));
    }

    #[test]
    fn a_hostile_deep_document_is_refused_not_a_stack_overflow() {
        // Deep enough that a recursive walk would overflow a 2 MiB test thread stack.
        let doc = nested(50_000);
        assert!(nests_deeper_than(&doc, &ROOT, None, MAX_NESTING_DEPTH));
        let json = crate::model::to_json(&doc);
        assert!(json.get("$error").is_some(), "{json}");
        assert!(crate::model::conflicts(&doc).is_empty());
    }
}
