"""Pascal VOC XML: VOC year folders (Annotations/, JPEGImages/, ImageSets/Main/) and the layouts of
labelling tools such as LabelImg (annotations/*.xml beside images/)."""

from __future__ import annotations

import filecmp
import math
from pathlib import Path, PurePosixPath, PureWindowsPath

from deepvision.datasets.detection.readers.common import (
    file_problem,
    inside,
    only_child,
    only_text,
    parse_flag,
    parse_number,
    parse_xml,
)
from deepvision.datasets.detection.schema import Annotations, Box, ImageRecord
from deepvision.errors import UserError
from deepvision.fileio import same_file
from deepvision.safeload import by_name_any_case, read_text_file

ANNOTATION_DIRS = ("Annotations", "annotations", "xml", "xmls", "labels")  # where tools put the XML files


def _path_name(value: str) -> str:
    """The file name of a `<path>` written on any machine (C:\\data\\a.jpg or /home/x/a.jpg)."""
    return PureWindowsPath(value).name if "\\" in value else PurePosixPath(value).name


def voc_image_dirs(xml_dir: Path, dataset_root: Path, folder: str) -> list[Path]:
    """Where labelling tools leave the photo of an XML file, in the order searched: beside the XML, VOC's
    JPEGImages/, the XML's `<folder>` under the dataset root (or beside the XML folder), a sibling images/."""
    dirs = [xml_dir, dataset_root / "JPEGImages"]
    folder_rel = PurePosixPath(folder.replace("\\", "/")) if folder else None
    if folder_rel is not None and not folder_rel.is_absolute() and ".." not in folder_rel.parts:
        dirs += [dataset_root / folder_rel, xml_dir.parent / folder_rel]
    dirs += [dataset_root / "images", dataset_root / "JPEGImages", xml_dir.parent / "images", dataset_root]
    out: list[Path] = []
    for d in dirs:
        if d not in out:
            out.append(d)
    return out


def read_voc_xml(xml_path: Path, image_dirs: list[Path] | None = None, dataset_root: Path | None = None
                 ) -> ImageRecord:
    """One VOC/LabelImg XML file. VOC corners are 1-based and inclusive: (xmin - 1, ymin - 1, xmax, ymax).

    The photo is `<filename>` (else the file name of `<path>`, else the XML's own name with an image
    extension), looked for in `image_dirs` (default: `voc_image_dirs`). The absolute `<path>` of the
    author's machine is never used as such: only its file name, so an annotation names files of its
    dataset alone.
    """
    root = parse_xml(xml_path)
    if root.tag != "annotation":
        raise UserError(f"{xml_path} is not a Pascal VOC annotation (root element <{root.tag}>)")
    field = {k: only_text(root, k, str(xml_path), scope="one annotation") or "" for k in ("filename", "path", "folder")}
    filename, path_name = field["filename"], _path_name(field["path"])
    explicit = image_dirs is not None
    if image_dirs is None:
        image_dirs = voc_image_dirs(xml_path.parent, dataset_root or xml_path.parent, field["folder"])
    names = [n for n in dict.fromkeys((filename, path_name)) if n]
    if filename and not PurePosixPath(filename).suffix and path_name.startswith(filename + "."):
        names.reverse()  # some tools write the stem alone in <filename>
    if not names:
        names = [xml_path.stem + ext for ext in (".jpg", ".jpeg", ".png", ".JPG", ".JPEG", ".PNG")]
    # a link may lead anywhere within the folders searched (a folder given with --images is its own root)
    roots = () if explicit else (dataset_root or xml_path.parent, *image_dirs)
    candidates = [inside(d, n, f"{xml_path}, <filename>", roots) for n in names for d in image_dirs]
    found = [c for c in candidates if file_problem(c) != "missing"]
    file = found[0] if found else candidates[0]
    other = next((c for c in found[1:] if c.name == file.name and file_problem(c) is None is file_problem(file)
                  and not same_file(c, file) and not filecmp.cmp(c, file, shallow=False)), None)
    if other is not None:  # two photos of one name: taking the first folder searched would be a guess
        raise UserError(f"{xml_path}: its photo {file.name} is in {file.parent} and in {other.parent}, and the two "
                        f"files differ; remove the wrong one, or give the folder of photos with --images")
    size = only_child(root, "size", str(xml_path), "one annotation")
    width = height = None
    if size is not None:  # a missing, zero or non-finite size is read from the image instead
        # <depth> is not used, but two of them are refused like any field given twice
        width, height, _ = (only_text(size, k, str(xml_path), scope="one <size>") for k in ("width", "height", "depth"))
        width, height = (parse_number(v or 0, str(xml_path), k) for v, k in ((width, "width"), (height, "height")))
        width, height = ((int(v) if math.isfinite(v) and 1 <= v <= 2**31 else None) for v in (width, height))
    record = ImageRecord(str(file.resolve()), width=width, height=height,
                         looked_in=(names[0], *(str(d) for d in image_dirs)))
    objects = root.findall("object")
    outer = next((e for e in root.iter() if e is not root and e.find("object") is not None), None)
    if outer is not None:  # an element left open (or another annotation pasted in): its boxes are not this photo's
        raise UserError(f"{xml_path}: an <object> lies inside <{outer.tag}>; each <object> belongs directly under "
                        f"<annotation> (is an element left open?)")
    for obj in objects:
        name = only_text(obj, "name", f"{xml_path}: object")
        bnds = obj.findall("bndbox")
        if len(bnds) != 1:  # a second box would be silently dropped: one <object> per box
            raise UserError(f"{xml_path}: object '{name}' has " + ("no <bndbox>" if not bnds else
                            f"{len(bnds)} <bndbox> elements; give each box its own <object>"))
        bnd = bnds[0]
        where = f"{xml_path}: object '{name}'"
        x1, y1, x2, y2 = (parse_number(only_text(bnd, k, where, None), str(xml_path), k)
                          for k in ("xmin", "ymin", "xmax", "ymax"))
        difficult = parse_flag(only_text(obj, "difficult", where) or "0", f"{xml_path}, <difficult>")
        record.boxes.append(Box(x1 - 1, y1 - 1, x2, y2, name, difficult))
    boxed = {id(e) for o in objects for e in (o, *o.iter("part"))}  # where a <bndbox> may lie
    stray = next((e for e in root.iter() if id(e) not in boxed and e.find("bndbox") is not None), None)
    if stray is not None:  # a box outside its <object> has no class: reading on would drop it without a word
        raise UserError(f"{xml_path}: a <bndbox> lies in <{stray.tag}>; each <bndbox> belongs inside an <object> "
                        f"(with its <name>), one <object> per box")
    return record


def _xml_files(folder: Path) -> dict[str, Path]:
    """The annotation files of a folder by stem, whatever the case of `.xml` (as photos' extensions are
    matched); a stem with two spellings (a.xml and a.XML) is refused: either would hide the other."""
    files: dict[str, Path] = {}
    for path in sorted(p for p in folder.iterdir() if p.suffix.lower() == ".xml"):
        if path.stem in files:
            raise UserError(f"{folder} holds {files[path.stem].name} and {path.name}, two annotations of one photo; "
                            f"keep one of them")
        files[path.stem] = path
    return files


def _voc_folders(root: Path) -> tuple[Path, Path]:
    """(annotation folder, dataset root) for a VOC year folder, a dataset folder holding annotations/
    beside images/ (or annotations/xmls/), a folder of XML files beside their photos, or the
    annotation folder itself (its parent is then the dataset root). Two folders of XML files are refused:
    reading one would leave the other out without a word."""
    found: list[Path] = []
    for d in (root, *(root / name / sub for name in ANNOTATION_DIRS for sub in ("", "xmls"))):
        if d.is_dir() and _xml_files(d) and not any(d.samefile(f) for f in found):  # Annotations = annotations
            found.append(d)
    if len(found) > 1:
        raise UserError(f"{root} holds XML annotations in {len(found)} folders ({', '.join(str(d) for d in found)}); "
                        f"give the one to read, e.g. deepvision detection build voc {found[-1]}"
                        + (f" (to read the XML files in {root} itself, move the other folder out of it)"
                           if found[0] == root else ""))
    if found and found[0] != root:
        return found[0], root
    if root.name.lower() in {n.lower() for n in ANNOTATION_DIRS}:
        return root, root.parent
    return root, root


def _image_sets(dataset_root: Path) -> Path:
    """ImageSets/Main whatever its case (as the annotation folder is found); two spellings are refused:
    reading one would draw the splits from the other's lists without a word."""
    found = sorted(m for s in dataset_root.iterdir() if s.name.lower() == "imagesets" and s.is_dir()
                   for m in s.iterdir() if m.name.lower() == "main" and m.is_dir())
    if len(found) > 1:
        raise UserError(f"{dataset_root} holds split lists in {len(found)} folders ({', '.join(map(str, found))}); "
                        f"keep one ImageSets/Main folder")
    return found[0] if found else dataset_root / "ImageSets" / "Main"


def read_voc(root: str | Path, splits: list[str] | None = None, images_dir: str | Path | None = None
             ) -> Annotations:
    """A VOC year folder (Annotations/, JPEGImages/, ImageSets/Main/SPLIT.txt), a LabelImg-style
    dataset (annotations/*.xml beside images/), or a folder of XML files beside their photos; the
    annotations/ folder itself may be given. Photos are found as in `voc_image_dirs`, or only in
    `images_dir`. Splits come from ImageSets/Main (train, val, test; trainval when there is no train);
    without ImageSets every XML file is in the split 'all'.
    """
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"VOC folder not found: {root}")
    ann_dir, dataset_root = _voc_folders(root)
    image_dirs = None
    if images_dir is not None:
        if not Path(images_dir).is_dir():
            raise UserError(f"--images: folder not found: {images_dir}")
        image_dirs = [Path(images_dir)]
    sets = _image_sets(dataset_root)
    ids: dict[str, list[str]] = {}
    lists: dict[str, Path] = {}  # the ImageSets file of each split
    if sets.is_dir():
        # Train.txt and train.TXT are the train list too (as ImageSets/Main is found); two spellings refused
        available = by_name_any_case(sets.iterdir(), lambda p: p.stem.casefold() if p.suffix.lower() == ".txt" and
                                     "_" not in p.stem else None, "split list")
        names = splits or [s for s in ("train", "val", "test") if s in available]
        if not splits and "train" not in available and "trainval" in available:
            names = ["trainval"] + [s for s in ("test",) if s in available]
        for name in names:
            if name.casefold() not in available:
                shown = sorted(p.stem for p in available.values())
                raise UserError(f"{sets} has no {name}.txt; available: {', '.join(shown) or 'none'}")
            listed = read_text_file(available[name.casefold()], "VOC split list").split()
            split = "train" if name == "trainval" and not splits else name
            ids[split], lists[split] = listed, available[name.casefold()]
    xmls = _xml_files(ann_dir)
    if not ids:
        if not xmls:
            raise UserError(f"no VOC annotations in {root}: expected Annotations/*.xml, annotations/*.xml or "
                            f"*.xml files")
        ids["all"] = list(xmls)
    out: dict[str, list[ImageRecord]] = {}
    for split, stems in ids.items():
        records = []
        listing = lists.get(split, ann_dir)
        for stem in stems:
            xml = xmls.get(stem) or inside(ann_dir, f"{stem}.xml", str(listing))
            problem = file_problem(xml)
            if problem is not None:  # a FIFO is named, never opened
                what = "does not exist" if problem == "missing" else f"is {problem}, not a regular file"
                raise UserError(f"{listing} lists '{stem}' but {xml} {what}")
            record = read_voc_xml(xml, image_dirs, dataset_root)
            record.source = f"{xml} (listed in {lists[split]})" if split in lists else str(xml)
            records.append(record)
        out[split] = records
    count = sum(len(r) for r in out.values())
    return Annotations(out, None, [], "voc", inputs=[str(root), str(ann_dir)],
                       read_from=f"{count:,} XML file(s) in {ann_dir}")
