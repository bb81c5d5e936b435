//! bank-server's in-process tests, one binary: authentication, the router (problems, limits,
//! metrics) and the committed OpenAPI document.

mod audit;
mod auth;
mod openapi;
mod router;
mod statements;
