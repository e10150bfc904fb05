//! Reading a corpus as documents: plain text (a document per file, or per line), JSON Lines and
//! Parquet with a text field, each optionally gzip- or Zstandard-compressed (`.gz`, `.zst`), from
//! files, folders (every file inside, sorted) and globs. Documents come out in a fixed order
//! (inputs as given, globs and folders sorted, records in file order), each with where it came
//! from, so `data prepare` numbers them the same on every run and names the record an error is in.
//!
//! Reading streams: a JSON Lines or text file is read a line at a time, a Parquet file a row group
//! at a time, so memory does not grow with the corpus (a whole-file document is one document).

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

/// How a file holds its documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum InputFormat {
    /// The whole file is one document.
    Text,
    /// Every line is a document.
    Lines,
    /// JSON Lines: one object per line, the document in its text field.
    Jsonl,
    /// Parquet: one row per document, the document in its text column.
    Parquet,
}

impl std::fmt::Display for InputFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Text => "text",
            Self::Lines => "lines",
            Self::Jsonl => "jsonl",
            Self::Parquet => "parquet",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Compression {
    None,
    Gzip,
    Zstd,
}

/// How documents are read, whatever the files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReadOptions {
    /// Format for every file [default: from each file's extension].
    pub format: Option<InputFormat>,
    /// Plain-text files hold a document per line (instead of one per file).
    pub lines: bool,
    /// The JSON field or Parquet column that holds the text.
    pub text_field: String,
    /// Drop empty documents instead of stopping at the first.
    pub skip_empty: bool,
}

/// One input file and how it is read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CorpusFile {
    pub path: PathBuf,
    pub format: InputFormat,
    /// Size on disk (compressed, if it is).
    pub bytes: u64,
}

/// Where a document came from, for messages: the file and its record (line or row), counted from 1.
#[derive(Debug, Clone)]
pub struct Location {
    pub path: PathBuf,
    pub record: u64,
    pub what: &'static str,
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} {}", self.path.display(), self.what, self.record)
    }
}

/// Expand inputs (files, folders, globs) into files in a fixed order, with their formats.
pub fn list_files(inputs: &[String], options: &ReadOptions) -> anyhow::Result<Vec<CorpusFile>> {
    anyhow::ensure!(!inputs.is_empty(), "no --input given; name corpus files, folders or globs (data/*.parquet)");
    let mut paths = Vec::new();
    for input in inputs {
        if input.contains(['*', '?', '[']) {
            let matched: Vec<PathBuf> = glob::glob(input)
                .with_context(|| format!("--input {input} is not a valid glob"))?
                .collect::<Result<_, _>>()
                .with_context(|| format!("--input {input}: cannot read a matched path"))?;
            anyhow::ensure!(!matched.is_empty(), "--input {input} matches no file");
            let mut files: Vec<PathBuf> = matched.into_iter().filter(|p| p.is_file()).collect();
            files.sort();
            paths.extend(files);
        } else {
            let path = PathBuf::from(input);
            let meta = std::fs::metadata(&path).with_context(|| format!("--input {input}: cannot read it"))?;
            if meta.is_dir() {
                let files = files_under(&path)?;
                anyhow::ensure!(!files.is_empty(), "--input {input} is a folder with no files in it");
                paths.extend(files);
            } else {
                paths.push(path);
            }
        }
    }
    paths
        .into_iter()
        .map(|path| {
            let bytes = std::fs::metadata(&path).with_context(|| format!("cannot read {}", path.display()))?.len();
            let format = options.format.unwrap_or_else(|| format_of(&path, options.lines));
            Ok(CorpusFile { path, format, bytes })
        })
        .collect()
}

/// Every non-hidden file under `dir`, sorted by path.
fn files_under(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).with_context(|| format!("cannot list {}", d.display()))? {
            let path = entry.with_context(|| format!("cannot list {}", d.display()))?.path();
            if path.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')) {
                continue;
            }
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

fn compression_of(path: &Path) -> Compression {
    match path.extension().and_then(|e| e.to_str()) {
        Some("gz") => Compression::Gzip,
        Some("zst" | "zstd") => Compression::Zstd,
        _ => Compression::None,
    }
}

/// The format an extension names (`.jsonl`, `.json`, `.ndjson`, `.parquet`; anything else is text),
/// looking through a compression suffix.
fn format_of(path: &Path, lines: bool) -> InputFormat {
    let inner = if compression_of(path) == Compression::None { path.to_path_buf() } else { path.with_extension("") };
    match inner.extension().and_then(|e| e.to_str()) {
        Some("jsonl" | "json" | "ndjson") => InputFormat::Jsonl,
        Some("parquet") => InputFormat::Parquet,
        _ if lines => InputFormat::Lines,
        _ => InputFormat::Text,
    }
}

/// A reader that counts the bytes read through it (compressed bytes, for progress).
struct Counting<R> {
    inner: R,
    count: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

fn open_stream(file: &CorpusFile, consumed: &Arc<AtomicU64>) -> anyhow::Result<Box<dyn BufRead>> {
    let raw = File::open(&file.path).with_context(|| format!("cannot open {}", file.path.display()))?;
    let counted = Counting { inner: raw, count: consumed.clone() };
    Ok(match compression_of(&file.path) {
        Compression::None => Box::new(BufReader::with_capacity(1 << 20, counted)),
        Compression::Gzip => Box::new(BufReader::with_capacity(1 << 20, flate2::read::MultiGzDecoder::new(counted))),
        Compression::Zstd => Box::new(BufReader::with_capacity(
            1 << 20,
            zstd::stream::read::Decoder::new(counted).with_context(|| format!("{} is not a Zstandard stream", file.path.display()))?,
        )),
    })
}

/// Calls `each(text, location)` for every document of `files`, in order. `consumed` counts the
/// on-disk bytes read so far. Stops at the first bad record with a message naming it.
pub fn for_each_document(
    files: &[CorpusFile],
    options: &ReadOptions,
    consumed: &Arc<AtomicU64>,
    mut each: impl FnMut(String, &Location) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    for file in files {
        let before = consumed.load(Ordering::Relaxed);
        let mut keep = |text: String, at: &Location| -> anyhow::Result<()> {
            if text.is_empty() {
                if options.skip_empty {
                    return Ok(());
                }
                bail!("{at} is an empty document; pass --skip-empty to drop empty documents");
            }
            each(text, at)
        };
        match file.format {
            InputFormat::Text => read_whole(file, consumed, &mut keep)?,
            InputFormat::Lines => read_lines(file, consumed, &mut keep)?,
            InputFormat::Jsonl => read_jsonl(file, &options.text_field, consumed, &mut keep)?,
            InputFormat::Parquet => read_parquet(file, &options.text_field, &mut keep)?,
        }
        // Whatever a decoder left unread (a trailing footer), the file is done.
        consumed.store(before + file.bytes, Ordering::Relaxed);
    }
    Ok(())
}

type Sink<'a> = dyn FnMut(String, &Location) -> anyhow::Result<()> + 'a;

fn utf8(bytes: Vec<u8>, at: &Location, offset: u64) -> anyhow::Result<String> {
    String::from_utf8(bytes).map_err(|e| {
        let bad = offset + e.utf8_error().valid_up_to() as u64;
        anyhow::anyhow!("{at} is not valid UTF-8 (byte {bad} of the file); convert the corpus to UTF-8 (iconv -f LATIN1 -t UTF-8, say)")
    })
}

fn read_whole(file: &CorpusFile, consumed: &Arc<AtomicU64>, each: &mut Sink) -> anyhow::Result<()> {
    let mut bytes = Vec::new();
    open_stream(file, consumed)?.read_to_end(&mut bytes).with_context(|| format!("cannot read {}", file.path.display()))?;
    let at = Location { path: file.path.clone(), record: 1, what: "document" };
    each(utf8(bytes, &at, 0)?, &at)
}

/// Lines without their `\n` (or `\r\n`), numbered from 1, with the byte offset each starts at.
fn for_each_line(file: &CorpusFile, consumed: &Arc<AtomicU64>, mut each: impl FnMut(Vec<u8>, u64, u64) -> anyhow::Result<()>) -> anyhow::Result<()> {
    let mut reader = open_stream(file, consumed)?;
    let (mut number, mut offset) = (0u64, 0u64);
    loop {
        let mut line = Vec::new();
        let n = reader.read_until(b'\n', &mut line).with_context(|| format!("cannot read {} after line {number}", file.path.display()))?;
        if n == 0 {
            return Ok(());
        }
        number += 1;
        if line.last() == Some(&b'\n') {
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
        }
        each(line, number, offset)?;
        offset += n as u64;
    }
}

fn read_lines(file: &CorpusFile, consumed: &Arc<AtomicU64>, each: &mut Sink) -> anyhow::Result<()> {
    for_each_line(file, consumed, |line, number, offset| {
        let at = Location { path: file.path.clone(), record: number, what: "line" };
        each(utf8(line, &at, offset)?, &at)
    })
}

fn read_jsonl(file: &CorpusFile, field: &str, consumed: &Arc<AtomicU64>, each: &mut Sink) -> anyhow::Result<()> {
    for_each_line(file, consumed, |line, number, _| {
        let at = Location { path: file.path.clone(), record: number, what: "line" };
        if line.iter().all(u8::is_ascii_whitespace) {
            return Ok(());
        }
        let mut record: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(&line).map_err(|e| anyhow::anyhow!("{at} is not a JSON object: {e}"))?;
        match record.remove(field) {
            Some(serde_json::Value::String(text)) => each(text, &at),
            Some(serde_json::Value::Null) => each(String::new(), &at),
            Some(other) => bail!("{at}: field `{field}` is {}, not a string; name the text field with --text-field", json_kind(&other)),
            None => {
                let fields: Vec<&str> = record.keys().map(String::as_str).collect();
                bail!("{at} has no field `{field}` (it has: {}); name the text field with --text-field", fields.join(", "))
            }
        }
    })
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

fn read_parquet(file: &CorpusFile, field: &str, each: &mut Sink) -> anyhow::Result<()> {
    use parquet::basic::{ConvertedType, LogicalType, Type as PhysicalType};
    use parquet::column::reader::ColumnReader;
    use parquet::data_type::ByteArray;
    use parquet::file::reader::{FileReader, SerializedFileReader};

    let path = &file.path;
    anyhow::ensure!(
        compression_of(path) == Compression::None,
        "{}: a compressed Parquet file; Parquet compresses inside the file, so decompress it first",
        path.display()
    );
    let raw = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let reader = SerializedFileReader::new(raw).with_context(|| format!("{} is not a Parquet file", path.display()))?;
    let schema = reader.metadata().file_metadata().schema_descr_ptr();
    let Some(index) = schema.columns().iter().position(|c| c.path().parts() == [field.to_string()]) else {
        let names: Vec<String> = schema.columns().iter().map(|c| c.path().string()).collect();
        bail!("{} has no column `{field}` (it has: {}); name the text column with --text-field", path.display(), names.join(", "));
    };
    let column = schema.column(index);
    let is_string = matches!(column.logical_type_ref(), Some(LogicalType::String)) || column.converted_type() == ConvertedType::UTF8;
    if column.physical_type() != PhysicalType::BYTE_ARRAY || !is_string {
        bail!(
            "{}: column `{field}` holds {:?}{}, not text (a UTF-8 string column); name the text column with --text-field",
            path.display(),
            column.physical_type(),
            column.logical_type_ref().map(|l| format!(" ({l:?})")).unwrap_or_default()
        );
    }
    anyhow::ensure!(column.max_rep_level() == 0, "{}: column `{field}` is a list, not one text per row", path.display());
    let max_def = column.max_def_level();
    let mut row = 0u64;
    for group in 0..reader.num_row_groups() {
        let group_reader = reader.get_row_group(group).with_context(|| format!("{}: cannot read row group {group}", path.display()))?;
        let ColumnReader::ByteArrayColumnReader(mut values_reader) =
            group_reader.get_column_reader(index).with_context(|| format!("{}: cannot read column `{field}`", path.display()))?
        else {
            unreachable!("a BYTE_ARRAY column has a byte-array reader")
        };
        loop {
            let (mut defs, mut values) = (Vec::new(), Vec::<ByteArray>::new());
            let (records, _, _) = values_reader
                .read_records(4096, Some(&mut defs), None, &mut values)
                .with_context(|| format!("{}: cannot read column `{field}` in row group {group}", path.display()))?;
            if records == 0 {
                break;
            }
            let mut values = values.into_iter();
            for r in 0..records {
                row += 1;
                let at = Location { path: path.clone(), record: row, what: "row" };
                if max_def > 0 && defs.get(r).copied().unwrap_or(max_def) < max_def {
                    each(String::new(), &at)?; // a null text: an empty document
                    continue;
                }
                let value = values.next().context("parquet: fewer values than records")?;
                each(utf8(value.data().to_vec(), &at, 0)?, &at)?;
            }
        }
    }
    Ok(())
}
