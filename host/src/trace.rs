//! What ties work to the request that caused it: the request id and the W3C
//! trace context. Both travel with commands and events (as Kafka headers)
//! so that a handler's logs name the HTTP request behind them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub const REQUEST_ID_HEADER: &str = "x-request-id";
pub const TRACEPARENT_HEADER: &str = "traceparent";

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestTrace {
    pub request_id: String,
    /// `00-<trace-id>-<parent-id>-<flags>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

impl RequestTrace {
    /// Keeps the caller's `traceparent` when it is well formed; otherwise
    /// starts a trace whose id is the request id (when that is a UUID), so
    /// logs and traces can be joined on it.
    pub fn new(request_id: String, traceparent: Option<&str>) -> Self {
        let traceparent = traceparent.filter(|value| is_traceparent(value)).map(str::to_string).or_else(|| {
            let trace_id = Uuid::parse_str(&request_id).unwrap_or_else(|_| Uuid::new_v4()).simple().to_string();
            let parent_id = &Uuid::new_v4().simple().to_string()[..16];
            Some(format!("00-{trace_id}-{parent_id}-01"))
        });
        Self { request_id, traceparent }
    }

    /// The record headers that carry this trace along.
    pub fn headers(&self) -> BTreeMap<String, String> {
        let mut headers = BTreeMap::from([(REQUEST_ID_HEADER.to_string(), self.request_id.clone())]);
        if let Some(traceparent) = &self.traceparent {
            headers.insert(TRACEPARENT_HEADER.into(), traceparent.clone());
        }
        headers
    }

    /// The trace id part of `traceparent`, for logs.
    pub fn trace_id(&self) -> &str {
        self.traceparent.as_deref().and_then(|value| value.get(3..35)).unwrap_or_default()
    }
}

fn is_traceparent(value: &str) -> bool {
    let parts: Vec<&str> = value.split('-').collect();
    let hex = |part: &str, len: usize| part.len() == len && part.bytes().all(|b| b.is_ascii_hexdigit());
    parts.len() == 4
        && hex(parts[0], 2)
        && parts[0] != "ff"
        && hex(parts[1], 32)
        && parts[1] != "0".repeat(32)
        && hex(parts[2], 16)
        && parts[2] != "0".repeat(16)
        && hex(parts[3], 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_a_valid_traceparent() {
        let given = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let trace = RequestTrace::new("r1".into(), Some(given));
        assert_eq!(trace.traceparent.as_deref(), Some(given));
        assert_eq!(trace.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
    }

    #[test]
    fn starts_a_trace_from_a_uuid_request_id_when_none_or_invalid_is_given() {
        let request_id = "0193a0c4-6f1e-7c3a-9d2e-4b8f0a1c2d3e";
        for given in [None, Some("garbage"), Some("00-00000000000000000000000000000000-00f067aa0ba902b7-01")] {
            let trace = RequestTrace::new(request_id.into(), given);
            assert_eq!(trace.trace_id(), "0193a0c46f1e7c3a9d2e4b8f0a1c2d3e");
            assert!(is_traceparent(trace.traceparent.as_deref().unwrap()));
        }
    }
}
