"""A run's weights: the saved students, the teacher (its own teacher.pt or a shared file teacher-ref.json names,
checked against its sha256), the teacher-logit cache runs distilling the same teacher reuse, and the resume
checkpoint. Every file here is a dict of tensors saved atomically and loaded with weights_only=True.

`RunWeights` is mixed into `Run` (pkd/runs/run.py), which supplies `path` and the recorded `config()`.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING

from pkd.config import MAX_STUDENTS
from pkd.runs.files import (CHECKPOINT_FILE, MAX_LOGITS_BYTES, MAX_PREV_SCALE, STUDENTS_DIR, TEACHER_FILE,
                            TEACHER_LOGITS_FILE, TEACHER_REF_FILE, RunError, check_contained)
from pkd.runs.io import atomic_write_json, load_tensors, open_regular, read_json, save_tensors
from pkd.runs.schema import SavedModel, TeacherLogits, TeacherRef
from pkd.runs.validate import get_field, teacher_ref_problem

if TYPE_CHECKING:  # torch is imported where tensors are checked: the app lists runs without it
    import torch

logger = logging.getLogger(__name__)


class RunWeights:
    """Savers and loaders of a run directory's weights (mixed into Run, which supplies `path` and `config`)."""

    path: Path
    if TYPE_CHECKING:  # what Run supplies
        def config(self) -> dict: ...

    # -------------------------------------------------------------------------- students
    def student_path(self, k: int) -> Path:
        return self.path / STUDENTS_DIR / f"student_{k:02d}.pt"

    def save_student(self, k: int, state_dict: dict, spec: dict, prev_scale: float = 1.0) -> None:
        """prev_scale: s_k of the residual ensemble E_k = s_k * E_(k-1) + z_k (1 unless the student learned it)."""
        check_contained(self.path)
        save_tensors(self.student_path(k), {SavedModel.STATE_DICT: state_dict, SavedModel.SPEC: spec,
                                            SavedModel.PREV_SCALE: float(prev_scale)})

    def load_student(self, k: int) -> dict:
        """students/student_KK.pt as {"state_dict": {name: tensor}, "spec": {"arch", "params"}, "prev_scale": float}
        (prev_scale 1.0 in files written before it existed); RunError if not."""
        path = self.student_path(k)
        saved = _check_weights_file(path, load_tensors(path))
        scale = saved.setdefault(SavedModel.PREV_SCALE, 1.0)
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale) \
                or not -MAX_PREV_SCALE <= scale <= MAX_PREV_SCALE:
            raise RunError(f"{path}: prev_scale {scale!r} is not a finite number within ±{MAX_PREV_SCALE:g}")
        saved[SavedModel.PREV_SCALE] = float(scale)
        return saved

    def students_planned(self) -> int:
        """K, the number of students the run's config schedules (MAX_STUDENTS when the manifest is unreadable)."""
        try:
            schedule = get_field(self.config(), "students", "schedule")
        except (OSError, RunError):
            schedule = None
        return len(schedule) if isinstance(schedule, list) else MAX_STUDENTS

    def students_saved(self) -> int:
        """Number of consecutive saved students 1..k, at most K: files beyond the run's K are ignored, not loaded."""
        k, planned = 0, self.students_planned()
        while k < planned and self.student_path(k + 1).is_file():
            k += 1
        return k

    # -------------------------------------------------------------------------- teacher
    def save_teacher(self, state_dict: dict, spec: dict) -> None:
        save_tensors(self.path / TEACHER_FILE, {SavedModel.STATE_DICT: state_dict, SavedModel.SPEC: spec})

    def save_teacher_logits(self, key: dict, logits: dict[str, torch.Tensor]) -> None:
        """teacher_logits.pt: the teacher's logits per split and the key they were made with (read_teacher_logits)."""
        save_tensors(self.path / TEACHER_LOGITS_FILE, {TeacherLogits.KEY: key, TeacherLogits.LOGITS: logits})

    def teacher_logits_path(self) -> Path:
        return self.path / TEACHER_LOGITS_FILE

    def load_teacher(self) -> dict:
        """teacher.pt, or the shared teacher file teacher-ref.json names (checked against its recorded sha256)."""
        ref = None if (self.path / TEACHER_FILE).exists() else self.teacher_reference()
        if ref is None:
            return _check_weights_file(self.path / TEACHER_FILE, load_tensors(self.path / TEACHER_FILE))
        path = self._referenced_teacher(ref)
        where = self.path / TEACHER_REF_FILE
        if not path.is_file():
            raise RunError(f"{where}: the shared teacher {ref[TeacherRef.PATH]!r} ({ref[TeacherRef.ABSOLUTE]}) is "
                           "missing; put the file back (the run uses it instead of a copy)")
        if file_sha256(path) != ref[TeacherRef.SHA256]:
            raise RunError(f"{where}: the shared teacher {path} changed after this run was trained (sha256 "
                           "differs); restore that file, or train the run again")
        return _check_weights_file(path, load_tensors(path))

    def reference_teacher(self, source: str | os.PathLike) -> None:
        """Share the teacher file `source` (a pkd teacher file, e.g. a sweep's) instead of copying it: write
        teacher-ref.json with its path relative to the run, its absolute path and its sha256."""
        source = check_teacher_file(source)
        check_contained(self.path)
        if (self.path / TEACHER_FILE).exists():
            raise RunError(f"{self.path / TEACHER_FILE}: the run has its own teacher; it cannot also share {source}")
        atomic_write_json(self.path / TEACHER_REF_FILE, {
            TeacherRef.PATH: os.path.relpath(source, self.path.resolve()), TeacherRef.ABSOLUTE: str(source),
            TeacherRef.SHA256: file_sha256(source)})

    def teacher_reference(self) -> dict | None:
        """teacher-ref.json checked ({path, absolute, sha256}), or None when the run has none."""
        path = self.path / TEACHER_REF_FILE
        if not (path.exists() or path.is_symlink()):
            return None
        ref = read_json(path)
        problem = teacher_ref_problem(ref)
        if problem:
            raise RunError(f"{path}: {problem}")
        return ref

    def _referenced_teacher(self, ref: dict) -> Path:
        """The shared teacher's file: its path relative to the run (a moved or cloned folder) if that exists,
        else its absolute path (a copied run on the same machine)."""
        relative = (self.path.resolve() / ref[TeacherRef.PATH]).resolve()
        absolute = Path(ref[TeacherRef.ABSOLUTE]).resolve()
        return relative if relative.is_file() or not absolute.is_file() else absolute

    def teacher_path(self) -> Path:
        """teacher.pt, or the shared file teacher-ref.json names (teacher.pt's path when that is unreadable)."""
        own = self.path / TEACHER_FILE
        try:
            ref = None if own.exists() else self.teacher_reference()
        except (OSError, RunError):
            ref = None
        return own if ref is None else self._referenced_teacher(ref)

    def has_teacher(self) -> bool:
        return (self.path / TEACHER_FILE).is_file() or (self.path / TEACHER_REF_FILE).is_file()

    # -------------------------------------------------------------------------- what a cached model depends on
    def weights_stamp(self) -> tuple:
        """(name, mtime) of the saved weights: changes whenever a student or the teacher is (re)saved."""
        return tuple((f.name, os.stat(f).st_mtime_ns) for f in self.weights_files())

    def weights_files(self) -> list[Path]:
        """The saved students 1..k and the teacher (if saved): what a cached model must be rebuilt after."""
        files = [self.student_path(k) for k in range(1, self.students_saved() + 1)]
        teacher = self.teacher_path()
        return files + ([teacher] if teacher.is_file() else [])

    # -------------------------------------------------------------------------- resume checkpoint
    def save_checkpoint(self, state: dict) -> None:
        save_tensors(self.path / CHECKPOINT_FILE, state)

    def load_checkpoint(self) -> dict | None:
        """The resume checkpoint, or None when there is none or it is corrupt (logged: resume falls back)."""
        path = self.path / CHECKPOINT_FILE
        if not path.is_file():
            return None
        try:
            return load_tensors(path)
        except RunError as exc:
            logger.warning("%s; resuming from the last saved student instead", exc)
            return None

    def clear_checkpoint(self) -> None:
        (self.path / CHECKPOINT_FILE).unlink(missing_ok=True)


def _check_weights_file(path: Path, obj: dict) -> dict:
    """A saved model must be {"state_dict": {str: tensor}, "spec": {"arch": str, "params": dict}}."""
    import torch

    state, spec = obj.get(SavedModel.STATE_DICT), obj.get(SavedModel.SPEC)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()) \
            or not isinstance(spec, dict) or not isinstance(spec.get(SavedModel.ARCH), str) \
            or not isinstance(spec.get(SavedModel.PARAMS, {}), dict):
        raise RunError(f"{path}: not a pkd model file (expected a state_dict of tensors and a spec)")
    return obj


def teacher_logits_beside(teacher_file: str | os.PathLike) -> Path:
    """Where the run that owns `teacher_file` (a teacher.pt) keeps its teacher-logits cache."""
    return Path(teacher_file).resolve().parent / TEACHER_LOGITS_FILE


def read_teacher_logits(path: Path, key: dict) -> dict[str, torch.Tensor] | None:
    """The cached teacher logits {split: (N, C) float32} in `path` if made with exactly `key` (teacher weights
    digest, device, precision, split fingerprints); None when missing, made otherwise, or damaged. Only a cache:
    never trusted beyond its key, loaded with weights_only=True, each tensor checked."""
    import torch

    try:
        if not path.is_file() or path.stat().st_size > MAX_LOGITS_BYTES:
            return None
        obj = load_tensors(path)
    except (OSError, RunError):
        return None
    logits = obj.get(TeacherLogits.LOGITS)
    if obj.get(TeacherLogits.KEY) != key or not isinstance(logits, dict) \
            or set(logits) != set(key[TeacherLogits.SPLITS]):
        return None
    for name, t in logits.items():
        if not (isinstance(t, torch.Tensor) and t.dtype == torch.float32 and t.dim() == 2
                and t.shape[0] == key[TeacherLogits.SPLITS][name][TeacherLogits.N]
                and bool(torch.isfinite(t).all())):
            return None
    return logits


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes (read in 1 MB chunks)."""
    digest = hashlib.sha256()
    with open_regular(Path(path)) as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_teacher_file(source: str | os.PathLike) -> Path:
    """The resolved path of a pkd teacher file ({state_dict, spec}, weights only) that runs may share; RunError
    naming it otherwise (a bare state_dict can only be copied into a run, not shared)."""
    path = Path(source).resolve()
    saved = _check_weights_file(path, load_tensors(path))
    if saved[SavedModel.SPEC].get(SavedModel.KIND, "teacher") != "teacher":
        raise RunError(f"{path}: holds a {saved[SavedModel.SPEC].get(SavedModel.KIND)!r} model, not a teacher")
    return path
