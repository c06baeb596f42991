"""The run directory: the only contract between training (writer) and the CLI/app (readers).

Layout of one run directory (every file is written by this package only):

    manifest.json     seed, resolved config, package versions, command, created time (written once)
    config.yaml       the resolved config (re-runnable with `python -m pkd train --config`)
    status.json       replaced atomically: state, pid, pid_start, stage, student, epoch, epochs, progress,
                      heartbeat, message, started, updated
    metrics.jsonl     append-only JSON lines: {"event": "epoch"|"teacher_done"|"student_done"|..., ...}
    prefix.csv        one row per ensemble prefix k (see PREFIX_COLUMNS), rewritten atomically
    summary.json      teacher figures + per-student rows + anytime curve, rewritten atomically
    teacher.pt        teacher state_dict;  students/student_01.pt ... : student state_dicts (tensors only)
    teacher-ref.json  instead of teacher.pt (optional, `train --teacher-ref`): the path and sha256 of a shared
                      teacher file (a sweep's trials use one teacher), followed by load_teacher
                      plus the student's prev_scale s_k (residual ensemble E_k = s_k * E_(k-1) + z_k)
    checkpoint.pt     resume state (students done, current student, model/optimizer/scheduler, epoch, RNG)
    train.log         human-readable log of the training process
    console.log       stdout/stderr of a process launched by the app (optional)

States (`State`): created, running, done, failed, stopped; a running run whose process is gone reads as died.

The package, one concept per module (each imports its siblings directly, never this face):
    files.py     file names, State, reader limits, the run-name rule, RunError
    io.py        atomic writes (with $PKD_FAULT fault injection), bounded reads, tensor files, printable
    place.py     where pkd may write (inside the named folder, never through a link, never replacing what it did
                 not create unless asked) and non-blocking, bounded reads of logs
    schema.py    every record's keys (PrefixRow, Summary, Status, MetricEvent, RunInfo, ...) and their rules
    validate.py  the checks of parsed records against those rules
    writer.py    RunWriter: creating a run, the writer lock, status, metrics and result tables
    weights.py   RunWeights: students, teacher (own or shared), teacher-logit cache, resume checkpoint
    run.py       Run = the readers + RunWriter + RunWeights, and Run.info()
    listing.py   list_runs, resolve_run, safe_child, delete_run
This face re-exports the public names, so `from pkd.runs import Run, RunError, State` works as before.
"""

from pkd.runs.files import (ACTIVE_STATES, CHECKPOINT_FILE, CONFIG_FILE, CONSOLE_FILE, GROUP_FILE, LIVE_FILES,
                            LIVE_METRICS_BYTES, LOCK_FILE, LOG_FILE, MANIFEST_FILE, MAX_COUNT, MAX_JSON_BYTES,
                            MAX_JSON_DEPTH, MAX_LOGITS_BYTES, MAX_METRICS_LINE, MAX_PREFIX_BYTES, MAX_PREV_SCALE,
                            MAX_TIMESTAMP, METRICS_FILE, PREFIX_FILE, RESUMABLE_STATES, RUN_NAME_RE, STATUS_FILE,
                            STUDENTS_DIR, SUMMARY_FILE, SWEEP_FILE, TEACHER_FILE, TEACHER_LOGITS_FILE,
                            TEACHER_REF_FILE, WRITTEN_STATES, RunError, State, check_run_name, default_runs_dir,
                            new_run_dir)
from pkd.runs.io import (FAULT_ENV, atomic_write_bytes, atomic_write_json, load_tensors, open_regular, printable,
                         read_bounded, read_json, save_tensors, write_error)
from pkd.runs.listing import delete_run, is_group_dir, is_sweep_dir, list_runs, resolve_run, safe_child
from pkd.runs.run import Run
from pkd.runs.schema import (ANYTIME_RULES, AUC_RULES, CONFIG_SECTIONS, CONFIG_TEXTS, DRAWN_RULES, MANIFEST_RULES,
                             METRIC_RULES, PHOTO_RULES, PREFIX_COLUMNS, PREFIX_FILLED, PREFIX_REQUIRED, PREFIX_RULES,
                             STATUS_RULES, SUMMARY_RULES, TEACHER_REF_RULES, TEACHER_RULES, VAL_FITTED_RULES,
                             VIDEO_LISTS, VIDEO_RULES, AnytimeAuc, AnytimePoint, DrawnFigures, Manifest, Metric,
                             MetricEvent, PhotoFigures, PrefixRow, RunInfo, SavedModel, Stage, Status, Summary, TeacherFigures,
                             TeacherLogits, TeacherRef, ValFittedPoint, VideoFigures)
from pkd.runs.validate import get_field
from pkd.runs.weights import check_teacher_file, file_sha256, read_teacher_logits, teacher_logits_beside
from pkd.runs.writer import package_versions

__all__ = [
    # files
    "ACTIVE_STATES", "CHECKPOINT_FILE", "CONFIG_FILE", "CONSOLE_FILE", "LIVE_FILES", "LIVE_METRICS_BYTES",
    "LOCK_FILE", "LOG_FILE", "MANIFEST_FILE", "MAX_COUNT", "MAX_JSON_BYTES", "MAX_JSON_DEPTH", "MAX_LOGITS_BYTES",
    "MAX_METRICS_LINE", "MAX_PREFIX_BYTES", "MAX_PREV_SCALE", "MAX_TIMESTAMP", "METRICS_FILE", "PREFIX_FILE",
    "RESUMABLE_STATES", "RUN_NAME_RE", "STATUS_FILE", "STUDENTS_DIR", "SUMMARY_FILE", "SWEEP_FILE", "TEACHER_FILE",
    "GROUP_FILE",
    "TEACHER_LOGITS_FILE", "TEACHER_REF_FILE", "WRITTEN_STATES", "RunError", "State", "check_run_name",
    "default_runs_dir", "new_run_dir",
    # io
    "FAULT_ENV", "atomic_write_bytes", "atomic_write_json", "load_tensors", "open_regular", "printable",
    "read_bounded", "read_json", "save_tensors", "write_error",
    # schema: record keys and rules
    "AnytimeAuc", "AnytimePoint", "DrawnFigures", "Manifest", "Metric", "MetricEvent", "PhotoFigures", "PrefixRow", "RunInfo",
    "SavedModel", "Stage", "Status", "Summary", "TeacherFigures", "TeacherLogits", "TeacherRef", "ValFittedPoint",
    "VideoFigures", "PREFIX_COLUMNS", "ANYTIME_RULES", "AUC_RULES", "CONFIG_SECTIONS", "CONFIG_TEXTS",
    "DRAWN_RULES", "MANIFEST_RULES", "METRIC_RULES", "PHOTO_RULES", "PREFIX_FILLED", "PREFIX_REQUIRED", "PREFIX_RULES",
    "STATUS_RULES", "SUMMARY_RULES", "TEACHER_REF_RULES", "TEACHER_RULES", "VAL_FITTED_RULES", "VIDEO_LISTS",
    "VIDEO_RULES",
    # validate
    "get_field",
    # the run, its weights and writer
    "Run", "check_teacher_file", "file_sha256", "read_teacher_logits", "teacher_logits_beside", "package_versions",
    # listing
    "delete_run", "is_group_dir", "is_sweep_dir", "list_runs", "resolve_run", "safe_child",
]
