//! Upload tokens as a client may send them back: verifying never panics, and a token that
//! verifies names the key it was signed for (re-signing it verifies to the same key).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sea_orm_resumable::{Scope, Secret};

fuzz_target!(|data: &[u8]| {
    let secret = Secret::new(vec![42; 32]).unwrap();
    let scope = Scope::new("fuzz");
    let token = String::from_utf8_lossy(data);
    if let Ok(key) = secret.verify(&scope, &token) {
        let again = secret.sign(&scope, &key);
        assert_eq!(secret.verify(&scope, again.as_str()).ok(), Some(key));
        assert!(secret.verify(&Scope::new("other"), &token).is_err());
    }
});
