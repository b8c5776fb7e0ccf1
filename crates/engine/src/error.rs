//! Docker's error answer: a status code and `{"message": "…"}` on one line. Every failure of
//! a handler becomes one [`ApiError`]; the runtime's errors are mapped to their status in one
//! place ([`From<ContainerError>`]), so the docker CLI's checks (`errdefs.IsNotFound` is a 404,
//! a conflict a 409) see what they see with dockerd.

use hyper::StatusCode;
use runtime::container::ContainerError;
use runtime::state::StateError;

/// An error answer of the API.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// docker's `message`: one line.
    pub message: String,
}

impl ApiError {
    /// An error with `status` and `message` (made one line).
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        let message: String = message.into();
        ApiError {
            status,
            message: message.replace('\n', " "),
        }
    }

    /// 400: the request is malformed or asks for something impossible.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }

    /// 409: the object's state does not allow it.
    pub fn conflict(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, message)
    }

    /// 500: the runtime failed.
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    /// 501: an endpoint this server does not implement (yet). The words "not supported" are
    /// what the docker CLI's `inspect` looks for to try the next kind of object (docker/cli
    /// `isErrSkippable`), so `docker inspect NAME` goes on past networks and volumes.
    pub fn not_implemented(method: &str, path: &str) -> ApiError {
        ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            format!("{method} {path} is not supported by this server yet"),
        )
    }

    /// "No such image: NAME", docker's 404 for images.
    pub fn no_such_image(name: &str) -> ApiError {
        ApiError::not_found(format!("No such image: {name}"))
    }

    /// The JSON body docker sends.
    pub fn body(&self) -> String {
        serde_json::json!({ "message": self.message }).to_string()
    }
}

/// The error and its sources on one line.
pub(crate) fn line(e: &(dyn std::error::Error + 'static)) -> String {
    runtime::error_line(e)
}

impl From<ContainerError> for ApiError {
    fn from(e: ContainerError) -> ApiError {
        use ContainerError as C;
        let message = line(&e);
        let e = match e {
            // A missing network is a 404, as docker's create answers it.
            C::Network(n) => return n.into(),
            e => e,
        };
        match &e {
            C::State(StateError::NotFound(key)) => {
                ApiError::not_found(format!("No such container: {key}"))
            }
            // docker's wording, which compose matches on.
            C::State(StateError::NameInUse { name, id }) => ApiError::conflict(format!(
                "Conflict. The container name \"/{name}\" is already in use by container \
                 \"{id}\". You have to remove (or rename) that container to be able to reuse \
                 that name."
            )),
            C::State(StateError::Ambiguous(_) | StateError::InvalidName(_)) => {
                ApiError::bad_request(message)
            }
            C::Image(img) => match img.as_ref() {
                runtime::image::ImageError::Missing(r) => ApiError::no_such_image(r),
                runtime::image::ImageError::MissingPlatform { .. } => ApiError::not_found(message),
                runtime::image::ImageError::Reference { .. }
                | runtime::image::ImageError::UnsupportedPlatform(_) => {
                    ApiError::bad_request(message)
                }
                _ => ApiError::internal(message),
            },
            C::WrongState { .. } | C::Paused { .. } | C::NetworkWhileRunning { .. } => {
                ApiError::conflict(message)
            }
            C::Spec(_)
            | C::Netconf(_)
            | C::Resources(_)
            | C::Mount(_)
            | C::RestartPolicy(_)
            | C::Sysctl(_)
            | C::LogConfig(_)
            | C::PublishWithoutNetwork
            | C::Endpoint(_)
            | C::Kernel(_)
            | C::Rename(_)
            | C::PruneFilter(_)
            | C::Top(_)
            | C::VmTooSmall { .. } => ApiError::bad_request(message),
            _ => ApiError::internal(message),
        }
    }
}

impl From<oci::StoreError> for ApiError {
    fn from(e: oci::StoreError) -> ApiError {
        ApiError::internal(line(&e))
    }
}

impl From<runtime::filter::FilterError> for ApiError {
    fn from(e: runtime::filter::FilterError) -> ApiError {
        ApiError::bad_request(line(&e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_errors_get_dockers_status_codes() {
        let e: ApiError = ContainerError::State(StateError::NotFound("web".into())).into();
        assert_eq!(e.status, StatusCode::NOT_FOUND);
        assert_eq!(e.body(), r#"{"message":"No such container: web"}"#);
        let e: ApiError = ContainerError::State(StateError::NameInUse {
            name: "web".into(),
            id: "abc".into(),
        })
        .into();
        assert_eq!(e.status, StatusCode::CONFLICT);
        assert!(e.message.contains("\"/web\" is already in use"), "{e}");
        let e: ApiError = ContainerError::PublishWithoutNetwork.into();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        let e = ApiError::internal("two\nlines");
        assert_eq!(e.message, "two lines");
    }
}
