//! The `GET /v1/events` server-sent event stream, parsed as the events arrive.

use std::io::{self, BufRead, BufReader, Read};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::ClientError;
use crate::api::{
    ChangeEvent, ConflictEvent, ConflictRecord, DocumentEvent, LaggedEvent, PeerEvent,
};

/// The longest line accepted from the stream. A `change` event carries at most 256
/// patches, but a patch can hold a whole object value, so this is roomy; a longer line
/// means something other than the daemon is talking.
const MAX_LINE_BYTES: u64 = 64 * 1024 * 1024;

/// One event as the stream named it: its `event:` name and its `data:` JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerEvent {
    /// The event name, e.g. `change`.
    pub event: String,
    /// Its JSON payload.
    pub data: Value,
}

/// The events `docs/api.md` defines, typed; [`Event::Other`] keeps any newer one.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A document changed.
    Change {
        /// The document.
        doc: String,
        /// Its new heads.
        heads: Vec<String>,
        /// `local` or `remote`.
        origin: String,
        /// The peer it came from, for a remote change.
        peer: Option<String>,
        /// The JSON pointers it touched.
        paths: Vec<String>,
        /// How many patches the event carries.
        patches: usize,
        /// Whether patches were dropped (more than the event holds).
        truncated: bool,
    },
    /// A document appeared.
    Created {
        /// The document.
        doc: String,
        /// `local` or `remote`.
        origin: String,
        /// The peer it came from.
        peer: Option<String>,
    },
    /// A document was deleted.
    Deleted {
        /// The document.
        doc: String,
        /// `local` or `remote`.
        origin: String,
        /// The peer it came from.
        peer: Option<String>,
    },
    /// A conflict was seen.
    Conflict {
        /// The document.
        doc: String,
        /// The logged conflict.
        record: ConflictRecord,
    },
    /// A peer connected.
    PeerConnected {
        /// The peer.
        peer_id: String,
    },
    /// A peer disconnected.
    PeerDisconnected {
        /// The peer.
        peer_id: String,
    },
    /// The client fell behind and missed events.
    Lagged {
        /// How many.
        missed: u64,
    },
    /// An event this client does not know, or one whose data does not have the shape
    /// its name promises.
    Other(ServerEvent),
}

impl ServerEvent {
    /// The typed form of this event.
    pub fn typed(&self) -> Event {
        self.try_typed()
            .unwrap_or_else(|| Event::Other(self.clone()))
    }

    fn try_typed(&self) -> Option<Event> {
        // The server's own types, read leniently; a document event without its document
        // is not what its name promises.
        fn parse<T: serde::de::DeserializeOwned>(data: &Value) -> Option<T> {
            T::deserialize(data).ok()
        }
        let data = &self.data;
        Some(match self.event.as_str() {
            "change" => {
                let c: ChangeEvent = parse(data).filter(|c: &ChangeEvent| !c.doc.is_empty())?;
                Event::Change {
                    doc: c.doc,
                    heads: c.heads,
                    origin: c.origin,
                    peer: c.peer,
                    paths: c.paths,
                    patches: c.patches.len(),
                    truncated: c.truncated,
                }
            }
            "created" | "deleted" => {
                let l: DocumentEvent = parse(data).filter(|l: &DocumentEvent| !l.doc.is_empty())?;
                if self.event == "created" {
                    Event::Created {
                        doc: l.doc,
                        origin: l.origin,
                        peer: l.peer,
                    }
                } else {
                    Event::Deleted {
                        doc: l.doc,
                        origin: l.origin,
                        peer: l.peer,
                    }
                }
            }
            "conflict" => {
                let c: ConflictEvent = parse(data).filter(|c: &ConflictEvent| !c.doc.is_empty())?;
                Event::Conflict {
                    doc: c.doc,
                    record: c.record,
                }
            }
            "peer_connected" => Event::PeerConnected {
                peer_id: parse::<PeerEvent>(data)?.peer_id,
            },
            "peer_disconnected" => Event::PeerDisconnected {
                peer_id: parse::<PeerEvent>(data)?.peer_id,
            },
            "lagged" => Event::Lagged {
                missed: parse::<LaggedEvent>(data)?.missed,
            },
            _ => return None,
        })
    }
}

/// The events of a `GET /v1/events` response, read one at a time as they arrive.
///
/// Follows the SSE format: `event:` and `data:` fields, a blank line ends an event,
/// `:` lines (the daemon's keepalives) and other fields are skipped. The iterator ends
/// when the daemon closes the stream; an event cut short by the close is dropped.
pub struct EventStream {
    url: String,
    reader: BufReader<Box<dyn Read + Send>>,
    line: Vec<u8>,
    finished: bool,
}

impl std::fmt::Debug for EventStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventStream")
            .field("url", &self.url)
            .field("finished", &self.finished)
            .finish_non_exhaustive()
    }
}

impl EventStream {
    /// Reads events from `body`, an SSE byte stream served at `url` (named in errors).
    pub fn new(url: impl Into<String>, body: impl Read + Send + 'static) -> Self {
        Self {
            url: url.into(),
            reader: BufReader::new(Box::new(body)),
            line: Vec::new(),
            finished: false,
        }
    }

    /// The next line without its line ending, or `None` at the end of the stream.
    fn next_line(&mut self) -> io::Result<Option<&str>> {
        self.line.clear();
        let read = (&mut self.reader)
            .take(MAX_LINE_BYTES + 1)
            .read_until(b'\n', &mut self.line)?;
        if read == 0 {
            return Ok(None);
        }
        if self.line.len() as u64 > MAX_LINE_BYTES {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("an event stream line is longer than {MAX_LINE_BYTES} bytes"),
            ));
        }
        if self.line.last() == Some(&b'\n') {
            self.line.pop();
            if self.line.last() == Some(&b'\r') {
                self.line.pop();
            }
        } else {
            // A line the close cut short is not a line (the event it belongs to is
            // incomplete), so the stream ends here.
            return Ok(None);
        }
        std::str::from_utf8(&self.line).map(Some).map_err(|_| {
            io::Error::new(io::ErrorKind::InvalidData, "the event stream is not UTF-8")
        })
    }

    fn next_event(&mut self) -> Result<Option<ServerEvent>, ClientError> {
        let mut name: Option<String> = None;
        let mut data: Option<String> = None;
        loop {
            let line = match self.next_line() {
                Ok(line) => line,
                Err(source) => {
                    return Err(ClientError::Transport {
                        url: self.url.clone(),
                        source: ureq::Error::Io(source),
                    });
                }
            };
            let Some(line) = line else {
                return Ok(None);
            };
            if line.is_empty() {
                match data.take() {
                    Some(data) => {
                        let event = name.take().unwrap_or_else(|| "message".to_owned());
                        let data =
                            serde_json::from_str(&data).map_err(|e| ClientError::BadResponse {
                                endpoint: "/v1/events".to_owned(),
                                detail: format!("the data of a {event:?} event is not JSON: {e}"),
                            })?;
                        return Ok(Some(ServerEvent { event, data }));
                    }
                    None => {
                        name = None;
                        continue;
                    }
                }
            }
            if line.starts_with(':') {
                continue;
            }
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "event" => name = Some(value.to_owned()),
                "data" => match &mut data {
                    Some(data) => {
                        data.push('\n');
                        data.push_str(value);
                    }
                    None => data = Some(value.to_owned()),
                },
                _ => {}
            }
        }
    }
}

impl Iterator for EventStream {
    type Item = Result<ServerEvent, ClientError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.finished {
            return None;
        }
        let next = self.next_event();
        if !matches!(next, Ok(Some(_))) {
            self.finished = true;
        }
        next.transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn events(stream: &'static str) -> Vec<ServerEvent> {
        EventStream::new("/v1/events", stream.as_bytes())
            .collect::<Result<_, _>>()
            .unwrap_or_else(|e| panic!("stream failed: {e}"))
    }

    #[test]
    fn events_keepalives_and_line_endings() {
        let stream = ": keepalive\n\nevent: created\ndata: {\"doc\":\"a\",\"origin\":\"local\",\"peer\":null}\n\n\
                      : keepalive\r\nevent:peer_connected\r\ndata:{\"peer_id\":\"p\"}\r\n\r\n";
        let got = events(stream);
        assert_eq!(got.len(), 2);
        assert_eq!(
            got[0].typed(),
            Event::Created {
                doc: "a".into(),
                origin: "local".into(),
                peer: None
            }
        );
        assert_eq!(
            got[1].typed(),
            Event::PeerConnected {
                peer_id: "p".into()
            }
        );
    }

    #[test]
    fn multi_line_data_is_joined_and_unknown_events_kept() {
        let got = events("event: future\ndata: {\"a\":\ndata: 1}\nid: 7\n\n");
        assert_eq!(got[0].data, json!({"a": 1}));
        assert!(matches!(got[0].typed(), Event::Other(_)));
    }

    #[test]
    fn an_event_cut_short_by_the_close_is_dropped() {
        assert!(events("event: change\ndata: {\"doc\":\"a\"}\n").is_empty());
        assert!(events("event: change\ndata: {\"doc\"").is_empty());
    }

    #[test]
    fn data_that_is_not_json_is_an_error_and_ends_the_stream() {
        let mut stream = EventStream::new(
            "/v1/events",
            &b"event: change\ndata: nope\n\nevent: x\ndata: 1\n\n"[..],
        );
        assert!(matches!(
            stream.next(),
            Some(Err(ClientError::BadResponse { .. }))
        ));
        assert!(stream.next().is_none());
    }

    #[test]
    fn a_change_with_the_wrong_shape_is_other() {
        let event = ServerEvent {
            event: "change".into(),
            data: json!({"heads": 3}),
        };
        assert!(matches!(event.typed(), Event::Other(_)));
    }
}
