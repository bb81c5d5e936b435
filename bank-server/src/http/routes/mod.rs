//! The handlers, one module per resource. Each carries its `#[utoipa::path]` description, which
//! [`super::openapi`] collects.

pub(crate) mod accounts;
pub(crate) mod admin;
pub(crate) mod auth;
pub(crate) mod ops;
pub(crate) mod statements;
pub(crate) mod transfers;
