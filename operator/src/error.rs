//! The reconciler's one error type; [`Error::metric_label`] names a variant
//! for metrics and events without the (unbounded) details.

/// Why a reconcile failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API call {action} failed: {source}")]
    Kube {
        action: &'static str,
        #[source]
        source: kube::Error,
    },
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    #[error("cannot serialise {what}: {source}")]
    Serialize {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("the object is invalid: {0}")]
    InvalidObject(String),
    #[error("progress token: {0}")]
    Token(#[from] crate::tokens::TokenError),
}

impl Error {
    /// Every value [`Error::metric_label`] returns.
    pub const METRIC_LABELS: [&'static str; 5] =
        ["kube", "finalizer", "serialize", "invalid_object", "token"];

    /// A short, fixed label for the error's kind.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube { .. } => "kube",
            // The reconcile's own error, not the finalizer's wrapping of it.
            Error::Finalizer(e) => match e.as_ref() {
                kube::runtime::finalizer::Error::ApplyFailed(e)
                | kube::runtime::finalizer::Error::CleanupFailed(e) => e.metric_label(),
                _ => "finalizer",
            },
            Error::Serialize { .. } => "serialize",
            Error::InvalidObject(_) => "invalid_object",
            Error::Token(_) => "token",
        }
    }

    pub(crate) fn kube(action: &'static str) -> impl FnOnce(kube::Error) -> Error {
        move |source| Error::Kube { action, source }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_labels_lists_every_label() {
        let serde = serde_json::from_str::<u8>("x").expect_err("not a number");
        let all = [
            Error::Kube {
                action: "get",
                source: kube::Error::LinesCodecMaxLineLengthExceeded,
            },
            Error::Finalizer(Box::new(kube::runtime::finalizer::Error::UnnamedObject)),
            Error::Serialize {
                what: "status",
                source: serde,
            },
            Error::InvalidObject(String::new()),
            Error::Token(crate::tokens::TokenError::MissingMetadata("uid")),
        ];
        for e in &all {
            assert!(Error::METRIC_LABELS.contains(&e.metric_label()), "{e}");
        }
        assert_eq!(all.len(), Error::METRIC_LABELS.len());
    }
}
