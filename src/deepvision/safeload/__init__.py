"""Bounded reading of everything that comes from outside, in four parts:

- `deepvision.safeload.files`: file-kind and size checks (regular files only, whole-file reads bounded by
  the size first, the ceilings on declared sizes and image sides);
- `deepvision.safeload.documents` and `deepvision.safeload.archives`: the bounded loaders (JSON and YAML
  with nesting and alias limits; zip/.npz members and MAT variables checked before they are inflated);
- `deepvision.safeload.images`: what an image's leading bytes declare (format, JPEG frame and EXIF
  orientation, PNG chunk damage), read before any decoder sees them (`deepvision.data.imageio` applies them);
- `deepvision.safeload.text`: text as cells and names (control characters escaped, CSV rows, spreadsheet
  cells without formulas, the class-name rule).

Every public name is re-exported here: `from deepvision.safeload import read_json` is the usual import.
See docs/data-reliability.md for the rules.
"""

from deepvision.safeload.archives import (
    DEFLATE_MAX_RATIO,
    ZIP_MAX_RATIO,
    check_mat_file,
    check_written_chunks,
    check_zip_directory,
    check_zip_member,
    open_npz,
)
from deepvision.safeload.documents import (
    MAX_ALIAS_GROWTH,
    MAX_DEPTH,
    MAX_INT_BITS,
    LimitError,
    ParseError,
    SafeLoader,
    expanded_size,
    json_depth,
    load_json,
    load_yaml,
    read_json,
    read_yaml,
)
from deepvision.safeload.files import (
    ENV_NO,
    ENV_YES,
    IMAGE_EXTS,
    MAX_FAKE_IMAGES,
    MAX_FAKE_SIDE,
    MAX_IMAGE_SIDE,
    MAX_JSON_FILE_BYTES,
    MAX_TEXT_BYTES,
    MAX_WORKERS,
    MAX_YAML_FILE_BYTES,
    any_case,
    bare_name_here,
    by_name_any_case,
    check_choice,
    check_declared_bytes,
    check_fake_images,
    check_file_size,
    check_image_side,
    check_numbers,
    check_range,
    check_workers,
    env_flag,
    env_number,
    first_not_whole,
    first_repeat,
    format_bytes,
    image_files,
    image_identity,
    input_file,
    is_image_file,
    is_plain_number_text,
    max_image_side,
    max_read_bytes,
    plain_float,
    read_bytes,
    read_declared,
    read_text_file,
    refuse_linked_files,
    refuse_name_and_file,
    regular_file,
    shown_value,
    tree_entries,
)
from deepvision.safeload.text import (
    FORMULA_STARTS,
    MAX_LINE_CHARS,
    bounded_lines,
    check_class_names,
    comma_items,
    csv_rows,
    is_control,
    name_lines,
    not_utf8,
    printable,
    record_index,
    refuse_listed_twice,
    shell_word,
    spreadsheet_cell,
    spreadsheet_row,
    text_file_lines,
)

__all__ = [
    "DEFLATE_MAX_RATIO", "FORMULA_STARTS", "IMAGE_EXTS", "LimitError", "MAX_ALIAS_GROWTH", "MAX_DEPTH",
    "MAX_FAKE_IMAGES", "MAX_FAKE_SIDE", "MAX_IMAGE_SIDE", "MAX_INT_BITS", "MAX_JSON_FILE_BYTES", "MAX_LINE_CHARS",
    "MAX_TEXT_BYTES", "MAX_WORKERS", "MAX_YAML_FILE_BYTES", "ParseError", "SafeLoader", "ZIP_MAX_RATIO",
    "any_case", "bare_name_here", "by_name_any_case",
    "bounded_lines", "check_class_names", "check_choice", "check_declared_bytes", "check_fake_images",
    "check_written_chunks",
    "check_file_size", "check_image_side", "check_mat_file", "check_numbers", "check_range", "check_workers",
    "check_zip_directory", "check_zip_member", "comma_items", "csv_rows", "expanded_size",
    "first_not_whole", "first_repeat",
    "ENV_NO", "ENV_YES", "env_flag", "env_number", "format_bytes",
    "image_files", "image_identity", "input_file", "is_control", "is_image_file", "is_plain_number_text", "json_depth",
    "load_json", "load_yaml",
    "max_image_side", "max_read_bytes", "name_lines", "not_utf8", "open_npz", "plain_float", "printable", "read_bytes",
    "read_declared", "read_json", "read_text_file", "read_yaml", "record_index", "refuse_linked_files",
    "refuse_listed_twice", "refuse_name_and_file", "regular_file", "shell_word", "shown_value", "spreadsheet_cell",
    "spreadsheet_row",
    "text_file_lines", "tree_entries",
]
