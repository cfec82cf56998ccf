//! The folders of src/ are the crate's layers (see lib.rs): storage, then the service,
//! then the protocol adapters and the field, then the page. No file may name anything of
//! a layer above its own, whether through a `crate::` path or a name the crate root
//! re-exports; test code is left out.

use std::{collections::HashMap, path::Path};

/// How high each folder is.
fn layer_of(folder: &str) -> Option<u8> {
    Some(match folder {
        "storage" => 0,
        "service" => 1,
        "protocol" | "field" => 2,
        "page" => 3,
        _ => return None,
    })
}

/// The folder each name the crate root re-exports comes from.
fn root_names(lib: &str) -> HashMap<String, String> {
    let mut names = HashMap::new();
    let mut rest = lib;
    while let Some(at) = rest.find("pub use ") {
        let statement = &rest[at + 8..rest[at..].find(';').map_or(rest.len(), |end| at + end)];
        rest = &rest[at + 8..];
        let Some(folder) = statement.split("::").next() else {
            continue;
        };
        let folder = folder.trim().trim_start_matches("crate::");
        let items = statement
            .rsplit_once("::")
            .map_or(statement, |(_, items)| items);
        for item in items.split([',', '{', '}', ' ', '\n']) {
            let item = item.rsplit(" as ").next().unwrap_or(item).trim();
            if !item.is_empty() && item != "self" {
                names.insert(item.to_owned(), folder.to_owned());
            }
        }
    }
    names
}

/// The first-level names a file imports from the crate: `crate::x…` and the items of
/// `use crate::{…}` groups.
fn crate_names(code: &str) -> Vec<String> {
    let mut names = Vec::new();
    let word = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    for (at, _) in code.match_indices("crate::") {
        let after = &code[at + 7..];
        if let Some(group) = after.strip_prefix('{') {
            let mut depth = 1;
            let mut item_start = true;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 1 => item_start = true,
                    c if item_start && depth == 1 && !c.is_whitespace() => {
                        names.push(word(&group[i..]));
                        item_start = false;
                    }
                    _ => {}
                }
                if depth == 0 {
                    break;
                }
            }
        } else {
            names.push(word(after));
        }
    }
    names
}

#[test]
fn no_layer_imports_one_above_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let root = root_names(&std::fs::read_to_string(src.join("lib.rs")).unwrap());
    let mut upward = Vec::new();
    let mut stack = vec![src.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let relative = path.strip_prefix(&src).unwrap();
            let Some(folder) = relative.iter().next().and_then(|f| f.to_str()) else {
                continue;
            };
            let (Some(own), true) = (layer_of(folder), relative.components().count() > 1) else {
                continue;
            };
            let text = std::fs::read_to_string(&path).unwrap();
            if text.starts_with("//! The upload-store suite") {
                continue; // a test module of its own
            }
            let code = text.split("#[cfg(test)]").next().unwrap_or_default();
            let code: String = code
                .lines()
                .filter(|l| !l.trim_start().starts_with("//"))
                .collect::<Vec<_>>()
                .join("\n");
            for name in crate_names(&code) {
                let target = root.get(&name).cloned().unwrap_or(name.clone());
                if let Some(theirs) = layer_of(&target)
                    && (theirs > own || (theirs == own && target != folder))
                {
                    upward.push(format!(
                        "{}: {folder} uses {target} ({name})",
                        relative.display()
                    ));
                }
            }
        }
    }
    assert!(
        upward.is_empty(),
        "imports from a layer above:\n{}",
        upward.join("\n")
    );
}

#[test]
fn the_check_sees_an_upward_import() {
    let names = crate_names(
        "use crate::{Scope, service::uploads::Uploads};\nlet x = crate::page::form::X;",
    );
    assert_eq!(names, ["Scope", "service", "page"]);
    let root = root_names(
        "pub use service::scope::{AnonymousScope, Scope};\npub use page::{assets, form};",
    );
    assert_eq!(root["Scope"], "service");
    assert_eq!(root["form"], "page");
}
