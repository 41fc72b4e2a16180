//! `webwarden list build`: merges hosts files, domain lists, IP lists and
//! UT1-style category folders into one categorized CSV list.
//!
//! Host names are normalized as the matcher compares them. Invalid lines
//! are skipped and reported. Exact duplicates and rows that a broader row of
//! the same action covers are dropped, and the rest are written in a fixed
//! order. Loading the built list decides every host and IP address with the
//! same action and category as loading the sources with `--list` in the
//! order given (see [`merge`]).

mod ip_range;
mod merge;
mod report;

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::anyhow;
use clap::Args;
use webwarden_policy::source::{count_rows, read_entries, Entry, EntrySink, EntryTarget};
use webwarden_policy::{Action, BadRow, Format, DEFAULT_CATEGORY, MAX_KEPT_BAD_ROWS};

use crate::lists::{self, ListSpec};
use crate::CliError;
use ip_range::IpRange;
use merge::{Added, Merged, Merger, RowInfo};

/// The file in a category folder that contains its domain list.
const DOMAINS_FILE: &str = "domains";

/// The file in a category folder that contains its URL list, which is skipped.
const URLS_FILE: &str = "urls";

/// Arguments of `webwarden list build`.
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Sources to merge, in priority order: a hosts file, domain list or IP
    /// list as for `--list` (a path, or
    /// `path=FILE,format=hosts|domains|ips,category=NAME,action=block|allow`),
    /// or a UT1-style folder whose subfolders are categories that each
    /// contain a `domains` file. When sources give a host different
    /// categories, the earlier source's category wins.
    #[arg(value_name = "SOURCE")]
    sources: Vec<ListSpec>,
    /// A source whose rows allow instead of block (repeatable), in the same
    /// forms. These are read after the SOURCE arguments.
    #[arg(long = "allow", value_name = "SOURCE")]
    allow: Vec<ListSpec>,
    /// Write the CSV list to FILE instead of standard output. FILE is
    /// replaced only when the build succeeds.
    #[arg(long, short, value_name = "FILE")]
    output: Option<PathBuf>,
    /// The category of rows from sources without `category=`. Category
    /// folders use their subfolder names.
    #[arg(long, value_name = "NAME", default_value = DEFAULT_CATEGORY)]
    category: String,
}

/// One list file to read.
#[derive(Debug)]
struct Source {
    /// The path as reports show it.
    name: String,
    path: PathBuf,
    /// The format given in the spec; `None` detects it.
    format: Option<Format>,
    category: u32,
    action: Action,
    counts: report::SourceCounts,
}

/// Files in category folders that are not merged.
#[derive(Debug, Default)]
struct FolderSkips {
    /// `urls` files and their meaningful lines.
    url_files: usize,
    url_lines: usize,
    /// Names of other files, such as `expressions` and `usage`.
    other_files: BTreeSet<String>,
    other_file_count: usize,
    /// Subfolders that are symbolic links, which UT1 uses for category aliases.
    aliases: Vec<String>,
    /// Subfolders without a `domains` file.
    without_domains: Vec<String>,
}

/// The sources and categories of one build, in the order given.
#[derive(Debug, Default)]
struct Plan {
    /// The SOURCE values as given, for the output's header.
    specs: Vec<String>,
    sources: Vec<Source>,
    categories: Vec<String>,
    category_ids: HashMap<String, u32>,
    skips: FolderSkips,
}

/// Bad lines over all sources: the first [`MAX_KEPT_BAD_ROWS`] and a count.
#[derive(Debug, Default)]
struct BadLines {
    rows: Vec<BadRow>,
    count: usize,
}

/// How long each step took.
#[derive(Debug, Default, Clone, Copy)]
struct Timings {
    read: Duration,
    merge: Duration,
    write: Duration,
}

/// Runs the command.
pub fn run(args: &BuildArgs) -> Result<ExitCode, CliError> {
    let started = Instant::now();
    let default_category = check_category(&args.category)
        .map_err(|reason| CliError::Usage(anyhow!("invalid --category: {reason}")))?;
    let mut plan = Plan::default();
    for spec in &args.sources {
        plan.add_spec(spec, spec.options.action, &default_category)?;
    }
    for spec in &args.allow {
        plan.add_spec(spec, Action::Allow, &default_category)?;
    }
    if plan.sources.is_empty() {
        return Err(CliError::Usage(anyhow!(
            "no sources to build from; give hosts files, domain lists, IP lists or \
             category folders as SOURCE arguments or with --allow"
        )));
    }

    let mut merger = Merger::new();
    let mut bad_lines = BadLines::default();
    for index in 0..plan.sources.len() {
        read_source(&mut plan.sources, index, &mut merger, &mut bad_lines)?;
    }
    let read_done = Instant::now();
    let merged = merger.finish(plan.sources.len(), plan.categories.len());
    let merge_done = Instant::now();
    write_output(args.output.as_deref(), &merged, &plan)?;
    let timings = Timings {
        read: read_done - started,
        merge: merge_done - read_done,
        write: merge_done.elapsed(),
    };

    lists::print_bad_rows(&bad_lines.rows, bad_lines.count, "warning");
    let destination = match &args.output {
        Some(path) => path.display().to_string(),
        None => "standard output".to_owned(),
    };
    let mut err = io::stderr().lock();
    report::write(&mut err, &plan, &merged.counts, &destination, timings)?;
    Ok(ExitCode::SUCCESS)
}

impl Plan {
    /// Adds the sources of one SOURCE value: one file, one category folder,
    /// or every category folder under a folder.
    fn add_spec(
        &mut self,
        spec: &ListSpec,
        action: Action,
        default_category: &str,
    ) -> Result<(), CliError> {
        let Some(path) = &spec.path else {
            return Err(CliError::Usage(anyhow!(
                "a build SOURCE must be a local file or folder; the built-in list is CSV and \
                 URLs are not read, so download a list first and pass its path"
            )));
        };
        let metadata = fs::metadata(path).map_err(|err| {
            CliError::Usage(anyhow!(
                "failed to read source {}: {err}; check the path and its permissions",
                path.display()
            ))
        })?;
        self.specs.push(path.display().to_string());
        if !metadata.is_dir() {
            let category = spec.options.category.as_deref().unwrap_or(default_category);
            let category = check_category(category).map_err(|reason| {
                CliError::Usage(anyhow!("invalid category for {}: {reason}", path.display()))
            })?;
            self.push_source(path.to_owned(), spec.options.format, &category, action);
            return Ok(());
        }
        if spec.options.category.is_some() {
            return Err(CliError::Usage(anyhow!(
                "category= does not apply to the folder {}, whose subfolder names are the \
                 categories; give a category folder's domains file to set its category",
                path.display()
            )));
        }
        if spec.options.format.is_some_and(|f| f != Format::Domains) {
            return Err(CliError::Usage(anyhow!(
                "{} is a folder, so its `domains` files are read as domain lists; \
                 remove format= or give a file",
                path.display()
            )));
        }
        self.add_folder(path, action)
    }

    /// Adds a category folder (one with a `domains` file) or each category
    /// subfolder of `path`, in name order.
    fn add_folder(&mut self, path: &Path, action: Action) -> Result<(), CliError> {
        if path.join(DOMAINS_FILE).is_file() {
            let name = folder_category(path)?;
            return self.add_category_folder(path, &name, action);
        }
        let mut entries = Vec::new();
        for entry in fs::read_dir(path).map_err(|err| folder_error(path, &err))? {
            let entry = entry.map_err(|err| folder_error(path, &err))?;
            let file_type = entry.file_type().map_err(|err| folder_error(path, &err))?;
            entries.push((entry.file_name(), entry.path(), file_type));
        }
        entries.sort_by(|a, b| a.0.cmp(&b.0));

        let sources_before = self.sources.len();
        for (file_name, subfolder, file_type) in entries {
            if file_name.to_string_lossy().starts_with('.') {
                continue;
            }
            if file_type.is_symlink() && subfolder.is_dir() {
                self.skips.aliases.push(subfolder.display().to_string());
                continue;
            }
            if !file_type.is_dir() {
                continue;
            }
            if !subfolder.join(DOMAINS_FILE).is_file() {
                self.skips
                    .without_domains
                    .push(subfolder.display().to_string());
                continue;
            }
            let name = folder_category(&subfolder)?;
            self.add_category_folder(&subfolder, &name, action)?;
        }
        if self.sources.len() == sources_before {
            let aliases = if self.skips.aliases.is_empty() {
                String::new()
            } else {
                format!(
                    " (symbolic links to folders are skipped as category aliases: {})",
                    self.skips.aliases.join(", ")
                )
            };
            return Err(CliError::Usage(anyhow!(
                "the folder {} contains no `{DOMAINS_FILE}` file and no category subfolders \
                 with one{aliases}; give a list file or a UT1-style folder such as blacklists/",
                path.display()
            )));
        }
        Ok(())
    }

    /// Adds the `domains` file of one category folder and counts the files
    /// that are skipped next to it.
    fn add_category_folder(
        &mut self,
        folder: &Path,
        category: &str,
        action: Action,
    ) -> Result<(), CliError> {
        for entry in fs::read_dir(folder).map_err(|err| folder_error(folder, &err))? {
            let entry = entry.map_err(|err| folder_error(folder, &err))?;
            let file_name = entry.file_name().to_string_lossy().into_owned();
            let is_folder = entry.path().is_dir();
            if file_name == DOMAINS_FILE || file_name.starts_with('.') || is_folder {
                continue;
            }
            if file_name == URLS_FILE {
                let text = read_file(&entry.path())?;
                self.skips.url_files += 1;
                self.skips.url_lines += count_rows(&text);
            } else {
                self.skips.other_file_count += 1;
                self.skips.other_files.insert(file_name);
            }
        }
        let domains = folder.join(DOMAINS_FILE);
        self.push_source(domains, Some(Format::Domains), category, action);
        Ok(())
    }

    fn push_source(
        &mut self,
        path: PathBuf,
        format: Option<Format>,
        category: &str,
        action: Action,
    ) {
        let category = self.category_id(category);
        self.sources.push(Source {
            name: path.display().to_string(),
            path,
            format,
            category,
            action,
            counts: report::SourceCounts::default(),
        });
    }

    fn category_id(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.category_ids.get(name) {
            return id;
        }
        let id = self.categories.len() as u32;
        self.categories.push(name.to_owned());
        self.category_ids.insert(name.to_owned(), id);
        id
    }
}

/// Returns the trimmed category, or the reason it cannot be one.
fn check_category(name: &str) -> Result<String, String> {
    let name = name.trim();
    if name.is_empty() {
        return Err("the category is empty".to_owned());
    }
    if let Some(c) = name.chars().find(|c| c.is_control()) {
        return Err(format!(
            "the category {name:?} contains the control character {c:?}"
        ));
    }
    Ok(name.to_owned())
}

/// Returns the category that a category folder's name gives.
fn folder_category(folder: &Path) -> Result<String, CliError> {
    // `.` and `..` have no file name of their own, so those take the name of
    // the folder they resolve to.
    let name = folder
        .file_name()
        .map(|name| name.to_owned())
        .or_else(|| {
            let resolved = folder.canonicalize().ok()?;
            resolved.file_name().map(|name| name.to_owned())
        })
        .ok_or_else(|| {
            CliError::Usage(anyhow!(
                "cannot take a category from the folder name of {}; give its domains file \
                 with category=",
                folder.display()
            ))
        })?;
    let name = name.to_str().ok_or_else(|| {
        CliError::Usage(anyhow!(
            "the folder name of {} is not valid UTF-8; rename the folder",
            folder.display()
        ))
    })?;
    check_category(name).map_err(|reason| {
        CliError::Usage(anyhow!(
            "invalid category folder {}: {reason}",
            folder.display()
        ))
    })
}

fn folder_error(folder: &Path, err: &io::Error) -> CliError {
    CliError::Usage(anyhow!(
        "failed to read the folder {}: {err}; check the path and its permissions",
        folder.display()
    ))
}

fn read_file(path: &Path) -> Result<Vec<u8>, CliError> {
    fs::read(path).map_err(|err| {
        CliError::Usage(anyhow!(
            "failed to read source {}: {err}; check the path and its permissions",
            path.display()
        ))
    })
}

/// Reads one source into the merger.
///
/// # Errors
///
/// Returns [`CliError::Usage`] when the file cannot be read, is a CSV list,
/// or has no usable rows, and [`CliError::Failed`] past the row limit.
fn read_source(
    sources: &mut [Source],
    index: usize,
    merger: &mut Merger,
    bad_lines: &mut BadLines,
) -> Result<(), CliError> {
    let source = &mut sources[index];
    let text = read_file(&source.path)?;
    let format = source_format(source, &text)?;
    source.counts.format = Some(format);

    let first_bad = bad_lines.rows.len();
    let info = RowInfo {
        action: source.action,
        category: source.category,
        source: index as u32,
    };
    let mut sink = SourceSink {
        merger,
        bad_lines,
        source,
        info,
        error: None,
    };
    read_entries(&text, format, &mut sink);
    if let Some(err) = sink.error {
        return Err(CliError::Failed(anyhow!(err)));
    }

    let counts = &source.counts;
    if counts.rows == 0 && counts.invalid > 0 {
        lists::print_bad_rows(&bad_lines.rows[first_bad..], counts.invalid, "error");
        return Err(CliError::Usage(anyhow!(
            "source {} has no usable rows: all {} row(s) are invalid as format {format}; \
             check the format (set format= explicitly) and the rows reported",
            source.name,
            counts.invalid
        )));
    }
    if counts.rows == 0 {
        eprintln!("warning: source {} contains no rows", source.name);
    }
    Ok(())
}

/// Returns the format to read a source in: the one its spec gives, or the
/// detected one.
///
/// # Errors
///
/// Returns [`CliError::Usage`] for CSV, which is not a build input.
fn source_format(source: &Source, text: &[u8]) -> Result<Format, CliError> {
    match source.format {
        Some(Format::Csv) => Err(CliError::Usage(anyhow!(
            "{}: format=csv is not a build input, because CSV rows are regexes; \
             load that list next to the built one with another --list",
            source.name
        ))),
        Some(format) => Ok(format),
        None => match Format::detect(&source.name, text) {
            Format::Csv => Err(CliError::Usage(anyhow!(
                "{} looks like a CSV list (a .csv name or commas in its rows), which is \
                 not a build input; if it is a hosts file or domain list, set \
                 format=hosts or format=domains",
                source.name
            ))),
            format => Ok(format),
        },
    }
}

/// Feeds the entries of one source to the merger and counts them.
struct SourceSink<'a> {
    merger: &'a mut Merger,
    bad_lines: &'a mut BadLines,
    source: &'a mut Source,
    info: RowInfo,
    /// The first merge error; later entries are ignored once it is set.
    error: Option<String>,
}

impl EntrySink for SourceSink<'_> {
    fn entry(&mut self, entry: Entry<'_>) {
        if self.error.is_some() {
            return;
        }
        let added = match entry.target {
            EntryTarget::Host(host, kind) => self.merger.add_host(host.as_str(), kind, self.info),
            EntryTarget::Ip(net) => self.merger.add_ip(IpRange::from(net), self.info),
        };
        let counts = &mut self.source.counts;
        match added {
            Ok(Added::New) => counts.rows += 1,
            Ok(Added::Duplicate { conflict }) => {
                counts.rows += 1;
                counts.duplicates += 1;
                counts.duplicate_conflicts += usize::from(conflict);
            }
            Err(err) => self.error = Some(err),
        }
    }

    fn bad_row(&mut self, line: u32, text: &str, reason: String) {
        self.source.counts.invalid += 1;
        self.bad_lines.count += 1;
        if self.bad_lines.rows.len() < MAX_KEPT_BAD_ROWS {
            self.bad_lines.rows.push(BadRow {
                source: self.source.name.clone(),
                line,
                text: text.to_owned(),
                reason,
            });
        }
    }

    fn local_name(&mut self) {
        self.source.counts.local_names += 1;
    }
}

/// Writes the list to standard output or to `path`. A regular file, or a
/// path that does not exist yet, is written through a temporary file that
/// replaces it only when everything was written. Anything else, such as
/// `/dev/null` or a pipe, is written in place, since renaming over it would
/// replace the device or pipe itself.
fn write_output(path: Option<&Path>, merged: &Merged, plan: &Plan) -> Result<(), CliError> {
    let Some(path) = path else {
        let mut out = BufWriter::with_capacity(1 << 16, io::stdout().lock());
        return write_list(&mut out, merged, plan);
    };
    let create_error = |path: &Path, err: io::Error| {
        CliError::Usage(anyhow!(
            "failed to create {}: {err}; check that the folder of --output exists and is \
             writable",
            path.display()
        ))
    };

    // A symbolic link is followed, so that the file it points to is replaced
    // and the link stays.
    let (target, permissions) = match fs::canonicalize(path) {
        Ok(target) if target.is_dir() => {
            return Err(CliError::Usage(anyhow!(
                "--output {} is a folder; give a file path",
                path.display()
            )))
        }
        Ok(target) if target.is_file() => {
            let permissions = fs::metadata(&target).ok().map(|m| m.permissions());
            (target, permissions)
        }
        Ok(_) => {
            let file = fs::OpenOptions::new()
                .write(true)
                .truncate(true)
                .open(path)
                .map_err(|err| create_error(path, err))?;
            let mut out = BufWriter::with_capacity(1 << 16, file);
            return write_list(&mut out, merged, plan).map_err(|err| write_error(path, err));
        }
        Err(_) => (path.to_owned(), None),
    };

    let Some(file_name) = target.file_name() else {
        return Err(CliError::Usage(anyhow!(
            "--output {} is not a file path; give a file name",
            path.display()
        )));
    };
    let mut temp_name = std::ffi::OsString::from(".");
    temp_name.push(file_name);
    temp_name.push(format!(".{}.tmp", std::process::id()));
    let temp = target.with_file_name(temp_name);

    let file = fs::File::create(&temp).map_err(|err| create_error(path, err))?;
    let mut written = write_list(&mut BufWriter::with_capacity(1 << 16, file), merged, plan);
    if let (Ok(()), Some(permissions)) = (&written, permissions) {
        written = fs::set_permissions(&temp, permissions).map_err(CliError::from);
    }
    if written.is_ok() {
        written = fs::rename(&temp, &target).map_err(CliError::from);
    }
    if written.is_err() {
        // The partial file is useless, and a failure to remove it changes nothing.
        let _ = fs::remove_file(&temp);
    }
    written.map_err(|err| write_error(path, err))
}

/// Adds the output path to a write failure.
fn write_error(path: &Path, err: CliError) -> CliError {
    match err {
        CliError::Failed(err) => {
            CliError::Failed(err.context(format!("failed to write {}", path.display())))
        }
        usage => usage,
    }
}

fn write_list(out: &mut impl Write, merged: &Merged, plan: &Plan) -> Result<(), CliError> {
    writeln!(
        out,
        "# Built by `webwarden list build` from these sources, in this order:"
    )?;
    for spec in &plan.specs {
        // A line break in a path would end the comment and start a row.
        let spec: String = spec
            .chars()
            .map(|c| if c.is_control() { '?' } else { c })
            .collect();
        writeln!(out, "#   {spec}")?;
    }
    merged.write_csv(out, &plan.categories)?;
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_tree(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (path, text) in files {
            let path = dir.path().join(path);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, text).unwrap();
        }
        dir
    }

    fn spec(value: &str) -> ListSpec {
        value.parse().unwrap()
    }

    #[test]
    fn folder_of_categories_gives_one_source_each() {
        let dir = temp_tree(&[
            ("lists/games/domains", "games.example\n"),
            (
                "lists/games/urls",
                "games.example/x\n# note\nother.example/y\n",
            ),
            ("lists/gambling/domains", "bet.example\n"),
            ("lists/gambling/expressions", "bet[0-9]+\n"),
            ("lists/empty/usage", "black\n"),
            ("lists/README", "about\n"),
        ]);
        let mut plan = Plan::default();
        let root = dir.path().join("lists");
        plan.add_spec(&spec(&root.display().to_string()), Action::Block, "X")
            .unwrap();
        let names: Vec<&str> = plan.categories.iter().map(String::as_str).collect();
        assert_eq!(names, ["gambling", "games"]);
        assert_eq!(plan.sources.len(), 2);
        assert!(plan.sources[0].name.ends_with("gambling/domains"));
        assert_eq!(plan.sources[0].format, Some(Format::Domains));
        assert_eq!(plan.skips.url_files, 1);
        assert_eq!(plan.skips.url_lines, 2);
        assert_eq!(plan.skips.other_file_count, 1);
        assert_eq!(plan.skips.without_domains.len(), 1);
    }

    #[test]
    fn single_category_folder_is_one_source() {
        let dir = temp_tree(&[
            ("gambling/domains", "bet.example\n"),
            ("gambling/sub/README", "about\n"),
        ]);
        let folder = dir.path().join("gambling").display().to_string();
        for value in [
            folder.clone(),
            format!("{folder}/"),
            format!("{folder}/sub/.."),
        ] {
            let mut plan = Plan::default();
            plan.add_spec(&spec(&value), Action::Block, "X").unwrap();
            assert_eq!(plan.categories, ["gambling"], "{value}");
            assert_eq!(plan.skips.other_file_count, 0, "{value}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn symlinked_category_is_an_alias() {
        let dir = temp_tree(&[("lists/publicite/domains", "ads.example\n")]);
        let root = dir.path().join("lists");
        std::os::unix::fs::symlink(root.join("publicite"), root.join("ads")).unwrap();
        let mut plan = Plan::default();
        plan.add_spec(&spec(&root.display().to_string()), Action::Block, "X")
            .unwrap();
        assert_eq!(plan.categories, ["publicite"]);
        assert_eq!(plan.skips.aliases.len(), 1);
    }

    #[test]
    fn bad_specs_are_usage_errors() {
        let dir = temp_tree(&[("lists/games/domains", "games.example\n"), ("other/x", "")]);
        let root = dir.path().display();
        let cases = [
            (format!("{root}/missing.txt"), "failed to read source"),
            (
                format!("path={root}/lists,category=Games"),
                "category= does not apply",
            ),
            (
                format!("path={root}/lists,format=hosts"),
                "is a folder, so its `domains` files",
            ),
            (format!("{root}/other"), "contains no `domains` file"),
            ("builtin".to_owned(), "must be a local file or folder"),
        ];
        for (value, expected) in cases {
            let mut plan = Plan::default();
            let err = plan.add_spec(&spec(&value), Action::Block, "X");
            match err {
                Err(CliError::Usage(err)) => {
                    let message = format!("{err:#}");
                    assert!(message.contains(expected), "{value}: {message}");
                }
                other => panic!("{value}: expected a usage error, got {other:?}"),
            }
        }
    }

    #[test]
    fn category_names_are_checked() {
        assert_eq!(check_category("  Ads "), Ok("Ads".to_owned()));
        assert!(check_category(" ").unwrap_err().contains("empty"));
        assert!(check_category("a\nb").unwrap_err().contains("control"));
    }
}
