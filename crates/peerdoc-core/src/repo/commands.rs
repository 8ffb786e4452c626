//! Commands from the local application.

use automerge::{Automerge, ChangeHash, PatchLog, ReadDoc, transaction::CommitOptions};
use rand::RngCore;

use crate::ids::DocumentId;
use crate::model;
use crate::persist::DocumentMeta;

use super::document::LoadedDoc;
use super::{
    ChangeOrigin, ChangeRequest, Command, CommandId, Event, Reply, Repo, RepoError, Waiter,
};

/// A new document made ready outside the engine, for [`Command::Adopt`]: building a
/// document from a large JSON value or loading large `save()` bytes takes long (seconds
/// for megabytes of text), and the engine handles one input at a time, so a node does
/// it on a worker thread and hands the engine the result.
#[derive(Debug)]
pub struct Prepared {
    doc: Automerge,
    /// The whole document as patches from nothing, for an imported one (it may hold
    /// conflicts, logged as any arriving change's are).
    patches: Vec<automerge::Patch>,
}

impl Prepared {
    /// A new document holding `initial` (a JSON object, see [`model::init_from_json`])
    /// in one change at `now_ms`, by an actor of the device (`actor_prefix`, as the
    /// engine's [`RepoConfig::actor_prefix`](super::RepoConfig)).
    pub fn from_json(
        initial: &serde_json::Value,
        actor_prefix: Option<[u8; 8]>,
        rng: &mut dyn RngCore,
        now_ms: u64,
    ) -> Result<Self, RepoError> {
        let mut doc = Automerge::new();
        doc.set_actor(super::document::device_actor(rng, actor_prefix));
        let mut tx = doc.transaction();
        if let Err(error) = model::init_from_json(&mut tx, initial) {
            tx.rollback();
            return Err(RepoError::InvalidChange(error.to_string()));
        }
        tx.commit_with(CommitOptions::default().with_time((now_ms / 1000) as i64));
        Ok(Self {
            doc,
            patches: Vec::new(),
        })
    }

    /// A document loaded from `save()` bytes, as [`Command::Import`] takes them.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, RepoError> {
        let doc = Automerge::load(bytes).map_err(|e| RepoError::InvalidDocument(e.to_string()))?;
        let patches = doc.diff(&[], &doc.get_heads());
        Ok(Self { doc, patches })
    }
}

/// Where a new document's content comes from.
enum Source {
    /// Built here from JSON (or empty).
    Json(Option<serde_json::Value>),
    /// Built or loaded outside the engine.
    Prepared(Box<Prepared>),
}

impl Command {
    /// The document a command is about, if any.
    fn document(&self) -> Option<DocumentId> {
        match self {
            Command::Create { .. }
            | Command::CreateAt { .. }
            | Command::Import { .. }
            | Command::Adopt { .. } => None,
            Command::Open { doc }
            | Command::Find { doc }
            | Command::Change { doc, .. }
            | Command::Read { doc, .. }
            | Command::Export { doc }
            | Command::Conflicts { doc }
            | Command::History { doc }
            | Command::Delete { doc }
            | Command::SetMeta { doc, .. }
            | Command::Broadcast { doc, .. } => Some(*doc),
        }
    }
}

impl Repo {
    fn commit_options(&self, message: Option<String>) -> CommitOptions {
        // automerge stores change times in seconds since the epoch.
        let options = CommitOptions::default().with_time((self.now_ms / 1000) as i64);
        match message {
            Some(m) => options.with_message(m),
            None => options,
        }
    }

    pub(super) fn command(&mut self, rng: &mut dyn RngCore, id: CommandId, command: Command) {
        let Some(doc) = command.document() else {
            return match command {
                Command::Create {
                    initial,
                    priority,
                    title,
                } => self.create(rng, id, None, Source::Json(initial), priority, title),
                Command::CreateAt {
                    doc,
                    initial,
                    priority,
                    title,
                } => {
                    if self.catalog.contains_key(&doc) || self.docs.contains_key(&doc) {
                        let error = RepoError::InvalidChange(format!("document {doc} exists"));
                        return self.reply(id, Err(error));
                    }
                    self.create(rng, id, Some(doc), Source::Json(initial), priority, title)
                }
                Command::Import {
                    bytes,
                    priority,
                    title,
                } => match Prepared::from_bytes(&bytes) {
                    Ok(prepared) => self.create(
                        rng,
                        id,
                        None,
                        Source::Prepared(Box::new(prepared)),
                        priority,
                        title,
                    ),
                    Err(error) => self.reply(id, Err(error)),
                },
                Command::Adopt {
                    prepared,
                    priority,
                    title,
                } => self.create(rng, id, None, Source::Prepared(prepared), priority, title),
                _ => {}
            };
        };
        let deleted = match self.catalog.get(&doc) {
            None if matches!(command, Command::Find { .. }) => {
                return self.find_from_peers(rng, id, doc);
            }
            None => return self.reply(id, Err(RepoError::DocumentNotFound(doc))),
            Some(meta) => meta.deleted,
        };
        if deleted {
            let result = match command {
                Command::Delete { .. } => Ok(Reply::Done),
                _ => Err(RepoError::DocumentDeleted(doc)),
            };
            return self.reply(id, result);
        }
        match command {
            Command::SetMeta {
                priority, title, ..
            } => return self.set_meta(id, doc, priority, title),
            Command::Broadcast { data, .. } => {
                self.broadcast_ephemeral(rng, doc, data);
                return self.reply(id, Ok(Reply::Done));
            }
            _ => {}
        }
        if self.docs.contains_key(&doc) {
            self.touch(&doc);
            self.run_doc_command(id, doc, command);
        } else if self.pending_commands >= self.config.max_pending_commands {
            self.reply(
                id,
                Err(RepoError::Busy(format!(
                    "{} commands are waiting for documents to load",
                    self.pending_commands
                ))),
            );
        } else {
            self.pending_commands += 1;
            self.start_load(doc, Waiter::Command(id, command));
        }
    }

    fn run_doc_command(&mut self, id: CommandId, doc_id: DocumentId, command: Command) {
        let Some(doc) = self.docs.get_mut(&doc_id) else {
            return self.reply(id, Err(RepoError::DocumentNotFound(doc_id)));
        };
        let result = match command {
            Command::Open { .. } | Command::Find { .. } => Ok(Reply::Opened {
                doc: doc_id,
                heads: doc.doc.get_heads(),
            }),
            Command::Read { heads: None, .. } => Ok(Reply::Json {
                value: model::to_json(&doc.doc),
                heads: doc.doc.get_heads(),
            }),
            Command::Read {
                heads: Some(heads), ..
            } => {
                if heads
                    .iter()
                    .all(|h| doc.doc.get_change_by_hash(h).is_some())
                {
                    Ok(Reply::Json {
                        value: model::to_json_at(&doc.doc, &heads),
                        heads,
                    })
                } else {
                    Err(RepoError::UnknownHeads(doc_id))
                }
            }
            Command::Export { .. } => Ok(Reply::Exported(doc.doc.save())),
            Command::Conflicts { .. } => Ok(Reply::Conflicts {
                current: model::conflicts(&doc.doc),
                log: doc.conflict_log.clone(),
            }),
            Command::History { .. } => Ok(Reply::History(model::history(&doc.doc))),
            Command::Change {
                request, message, ..
            } => return self.local_change(id, doc_id, request, message),
            Command::Delete { .. } => {
                return self.apply_tombstone(doc_id, ChangeOrigin::Local, Some(id));
            }
            Command::Create { .. }
            | Command::CreateAt { .. }
            | Command::Import { .. }
            | Command::Adopt { .. }
            | Command::SetMeta { .. }
            | Command::Broadcast { .. } => return,
        };
        self.reply(id, result);
    }

    // One parameter per way a document comes to be; a struct would only rename them.
    #[allow(clippy::too_many_arguments)]
    fn create(
        &mut self,
        rng: &mut dyn RngCore,
        id: CommandId,
        fixed_id: Option<DocumentId>,
        source: Source,
        priority: i32,
        title: Option<String>,
    ) {
        let (base, initial, patches) = match source {
            Source::Json(initial) => (Automerge::new(), initial, Vec::new()),
            Source::Prepared(prepared) => {
                let Prepared { doc, patches } = *prepared;
                (doc, None, patches)
            }
        };
        let use_tick = self.tick_use();
        let mut doc = LoadedDoc::new(base, rng, use_tick, self.config.actor_prefix);
        if let Some(initial) = initial {
            let mut tx = doc.doc.transaction();
            if let Err(error) = model::init_from_json(&mut tx, &initial) {
                tx.rollback();
                return self.reply(id, Err(RepoError::InvalidChange(error.to_string())));
            }
            tx.commit_with(self.commit_options(None));
        }
        if doc.doc.get_heads().is_empty() {
            // `{}`, no content or an imported empty document: give it a change so that
            // it has heads and syncs like any other (a document without heads is never
            // offered to a peer).
            doc.doc.empty_commit(self.commit_options(None));
        }
        let doc_id = fixed_id.unwrap_or_else(|| DocumentId::random(rng));
        let mut meta = DocumentMeta::new(self.now_ms, priority);
        meta.title = title;
        self.catalog.insert(doc_id, meta);
        let heads = doc.doc.get_heads();
        // An imported document may hold conflicts already: its patches (the diff from
        // nothing) log them as any arriving change's are.
        self.docs.insert(doc_id, doc);
        self.event(Event::DocumentCreated {
            doc: doc_id,
            origin: ChangeOrigin::Local,
        });
        self.doc_changed(
            doc_id,
            patches,
            ChangeOrigin::Local,
            vec![(id, Reply::Created { doc: doc_id, heads })],
        );
    }

    fn local_change(
        &mut self,
        id: CommandId,
        doc_id: DocumentId,
        request: ChangeRequest,
        message: Option<String>,
    ) {
        let options = self.commit_options(message);
        let Some(doc) = self.docs.get_mut(&doc_id) else {
            return self.reply(id, Err(RepoError::DocumentNotFound(doc_id)));
        };
        let before = doc.doc.get_heads();
        let outcome: Result<(Option<ChangeHash>, Vec<automerge::Patch>), RepoError> = match request
        {
            ChangeRequest::Revert { heads } => {
                match model::revert_to(&mut doc.doc, &heads, options) {
                    Ok(hash) => {
                        let after = doc.doc.get_heads();
                        Ok((hash, doc.doc.diff(&before, &after)))
                    }
                    Err(model::ModelError::UnknownHeads { .. }) => {
                        Err(RepoError::UnknownHeads(doc_id))
                    }
                    Err(error) => Err(RepoError::InvalidChange(error.to_string())),
                }
            }
            other => Self::transact(&mut doc.doc, other, options)
                .map(|(hash, mut log)| (hash, doc.doc.make_patches(&mut log))),
        };
        match outcome {
            Err(error) => self.reply(id, Err(error)),
            Ok((None, _)) => self.reply(
                id,
                Ok(Reply::Changed {
                    heads: before,
                    change: None,
                }),
            ),
            Ok((Some(hash), patches)) => {
                let heads = self
                    .docs
                    .get(&doc_id)
                    .map(|d| d.doc.get_heads())
                    .unwrap_or_default();
                self.doc_changed(
                    doc_id,
                    patches,
                    ChangeOrigin::Local,
                    vec![(
                        id,
                        Reply::Changed {
                            heads,
                            change: Some(hash),
                        },
                    )],
                );
            }
        }
    }

    /// Runs a transaction-based request; an error rolls it back.
    fn transact(
        doc: &mut Automerge,
        request: ChangeRequest,
        options: CommitOptions,
    ) -> Result<(Option<ChangeHash>, PatchLog), RepoError> {
        let mut tx = doc
            .transaction_log_patches(PatchLog::active())
            .map_err(|e| RepoError::InvalidChange(e.to_string()))?;
        let applied = match request {
            ChangeRequest::Ops(ops) => model::apply_ops(&mut tx, &ops),
            ChangeRequest::ReplaceWith(value) => model::reconcile_to_json(&mut tx, &value),
            ChangeRequest::Func(f) => f(&mut tx),
            ChangeRequest::Resolve { path, value } => model::resolve(&mut tx, &path, &value),
            ChangeRequest::Revert { .. } => Ok(()),
        };
        match applied {
            Err(error) => {
                tx.rollback();
                Err(RepoError::InvalidChange(error.to_string()))
            }
            Ok(()) => Ok(tx.commit_with(options)),
        }
    }

    fn set_meta(
        &mut self,
        id: CommandId,
        doc: DocumentId,
        priority: Option<i32>,
        title: Option<String>,
    ) {
        let Some(meta) = self.catalog.get_mut(&doc) else {
            return self.reply(id, Err(RepoError::DocumentNotFound(doc)));
        };
        if let Some(p) = priority {
            meta.priority = p;
        }
        if title.is_some() {
            meta.title = title;
        }
        let meta = meta.clone();
        self.write_record(doc, vec![(id, Reply::Done)]);
        self.event(Event::MetaChanged { doc, meta });
    }
}
