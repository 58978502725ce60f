//! The message of a caught panic, for the places that turn a panic into an
//! error (the actors, the ViperGPT sandbox's thread).

/// The message of a caught panic's payload.
pub fn message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".to_string()
    }
}
