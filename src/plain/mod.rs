//! The plain front end: inquire prompts over the same engine, for terminals where a full-screen UI is impractical.
