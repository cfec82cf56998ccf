//! The page: the form input that turns a token into a field value ([`form`]), the HTML
//! [`widget`] and the JavaScript and CSS it needs ([`assets`]).

pub mod assets;
pub mod form;
pub mod widget;
