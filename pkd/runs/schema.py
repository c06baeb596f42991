"""The run records' one definition: the keys of every record a run directory holds (prefix rows, summary.json,
status.json, the manifest, metrics events, teacher-ref.json, saved models, Run.info()'s listing row) as named
constants, and the rules (type and range per field) every reader checks those records against before anyone
indexes them (the checks themselves: pkd/runs/validate.py).

Code spells a record key through these names (`row[PrefixRow.PREFIX_ACC]`, `info[RunInfo.PROBLEM]`), never as a
string literal, so renaming or adding a field happens here.
"""

from __future__ import annotations

from pkd.config import MAX_STUDENTS
from pkd.runs.files import MAX_COUNT, MAX_PREV_SCALE, MAX_TIMESTAMP

# ----------------------------------------------------------------------------------------------- record keys


class PrefixRow:
    """prefix.csv's columns: one row per ensemble prefix k, students 1..k together (summary.json's "prefixes" items
    and a student_done metrics record hold the same keys)."""

    K = "k"
    ARCH = "arch"
    PARAMS = "params"
    STUDENT_FLOPS = "student_flops"
    CUMULATIVE_FLOPS = "cumulative_flops"
    SHARE_OF_TEACHER = "share_of_teacher"
    PREFIX_ACC = "prefix_acc"
    SOLO_ACC = "solo_acc"
    PREFIX_VAL_ACC = "prefix_val_acc"
    SOLO_VAL_ACC = "solo_val_acc"
    PREV_SCALE = "prev_scale"  # s_k of the residual ensemble E_k = s_k * E_(k-1) + z_k
    # conditional monotonicity on test (Jazbec et al. 2023), the step from prefix k-1 to k (empty at k = 1): the
    # share of samples whose probability of the true class drops, and the share whose answer flips right -> wrong
    TRUE_PROB_DROP = "true_prob_drop"
    RIGHT_TO_WRONG = "right_to_wrong"


class TeacherFigures:
    """summary.json's "teacher" (a teacher_done metrics record holds the same keys)."""

    ARCH = "arch"
    FLOPS = "flops"
    PARAMS = "params"
    TEST_ACC = "test_acc"
    VAL_ACC = "val_acc"


class AnytimePoint:
    """An item of summary.json's "anytime": early exit at one confidence threshold, on test."""

    CONFIDENCE = "confidence"
    ACC = "acc"
    MEAN_FLOPS = "mean_flops"


class TeacherTest:
    """An item of summary.json's "teacher_tests": prefix k against the run's own teacher on the test split, sample
    by sample (McNemar's exact test, pkd.stats.mcnemar with the prefix as A): so "+0.05 points vs the teacher" is
    printed with its verdict without running the models again."""

    K = "k"
    N = "n"
    PREFIX_ONLY = "prefix_only"  # samples the prefix gets right and the teacher wrong
    TEACHER_ONLY = "teacher_only"
    DIFF = "diff"  # prefix accuracy minus the teacher's, on these samples
    P_VALUE = "p_value"
    VERDICT = "verdict"  # one of pkd.stats.VERDICTS, for the prefix


class ValFittedPoint:
    """An item of summary.json's "anytime_val_fitted": early exit under one FLOP budget with its threshold fitted on
    val (confidence null: no early exit), measured on test (acc, mean_flops) and on val."""

    BUDGET = "budget"
    CONFIDENCE = "confidence"
    VAL_ACC = "val_acc"
    VAL_MEAN_FLOPS = "val_mean_flops"
    ACC = "acc"
    MEAN_FLOPS = "mean_flops"


class AnytimeAuc:
    """summary.json's "anytime_auc": area under the anytime curve on val and test (null without figures), over
    budgets low_flops..high_flops."""

    VAL = "val"
    TEST = "test"
    LOW_FLOPS = "low_flops"
    HIGH_FLOPS = "high_flops"


class CombinerFigures:
    """An item of summary.json's "combiners" (one per pkd.combiners name): each prefix's test and val accuracy
    under that combiner, its monotonicity shares (K - 1 steps, PrefixRow.TRUE_PROB_DROP's meaning) and its
    val-fitted early-exit curve under FLOP budgets (ValFittedPoint items)."""

    PREFIX_ACC = PrefixRow.PREFIX_ACC
    PREFIX_VAL_ACC = PrefixRow.PREFIX_VAL_ACC
    TRUE_PROB_DROP = PrefixRow.TRUE_PROB_DROP
    RIGHT_TO_WRONG = PrefixRow.RIGHT_TO_WRONG
    BUDGETED = "budgeted"


class RobustnessSet:
    """What summary.json's "drawn" and "photos" share: accuracies on a set of inputs unlike the test split's."""

    SEED = "seed"
    N = "n"
    TEACHER_ACC = "teacher_acc"
    PREFIX_ACC = "prefix_acc"  # one accuracy per prefix k = 1..K


class DrawnFigures(RobustnessSet):
    """summary.json's "drawn": accuracies on the drawn-digit robustness set (pkd.drawn)."""

    PER_DIGIT = "per_digit"


class PhotoFigures(RobustnessSet):
    """summary.json's "photos": accuracies on the re-photographed Fashion-MNIST set (pkd.photos)."""

    PER_CLASS = "per_class"


class VideoFigures:
    """summary.json's "video" of a clip run: the reversal test, digit identity and (with novel classes) base-to-novel
    accuracies; each prefix_* a list with one share per prefix k = 1..K."""

    SPLIT = "split"
    N = "n"
    TEACHER_REVERSAL_CHANGE = "teacher_reversal_change"
    TEACHER_DIGIT_ACC = "teacher_digit_acc"
    PREFIX_REVERSAL_CHANGE = "prefix_reversal_change"
    PREFIX_DIGIT_ACC = "prefix_digit_acc"
    TEACHER_BASE_ACC = "teacher_base_acc"
    TEACHER_NOVEL_ACC = "teacher_novel_acc"
    TEACHER_HM = "teacher_hm"
    PREFIX_BASE_ACC = "prefix_base_acc"
    PREFIX_NOVEL_ACC = "prefix_novel_acc"
    PREFIX_HM = "prefix_hm"


class Summary:
    """summary.json's top-level keys."""

    NAME = "name"
    DATASET = "dataset"
    MODE = "mode"
    FLOPS_UNIT = "flops_unit"
    K_PLANNED = "k_planned"
    TEACHER = "teacher"  # TeacherFigures
    PREFIXES = "prefixes"  # PrefixRow items
    ANYTIME = "anytime"  # AnytimePoint items
    ANYTIME_VAL_FITTED = "anytime_val_fitted"  # ValFittedPoint items
    ANYTIME_AUC = "anytime_auc"  # AnytimeAuc
    COMBINERS = "combiners"  # {combiner name: CombinerFigures}
    TEACHER_TESTS = "teacher_tests"  # TeacherTest items, one per prefix k
    DRAWN = "drawn"  # DrawnFigures
    PHOTOS = "photos"  # PhotoFigures
    VIDEO = "video"  # VideoFigures


class GroupRecord:
    """group.json's keys (pkd.groups, written once when `pkd train --seeds` creates the group): the resolved config
    every member shares, the seeds (member `seed-<s>` per seed), the shared teacher file (null until the first
    member has trained it when the config names none), when and by what command it was created."""

    CONFIG = "config"
    SEEDS = "seeds"
    TEACHER = "teacher"
    CREATED = "created"
    COMMAND = "command"


class Status:
    """status.json's keys (replaced atomically as training goes)."""

    STATE = "state"
    PID = "pid"
    PID_START = "pid_start"
    STAGE = "stage"
    STUDENT = "student"
    EPOCH = "epoch"
    EPOCHS = "epochs"
    PROGRESS = "progress"
    LOSS = "loss"
    MESSAGE = "message"
    STARTED = "started"
    UPDATED = "updated"
    HEARTBEAT = "heartbeat"
    SCAN_BACKEND = "scan_backend"
    DEVICE = "device"
    WORLD_SIZE = "world_size"


class Manifest:
    """manifest.json's keys (written once, when the run is created)."""

    FORMAT = "format"
    NAME = "name"
    CREATED = "created"
    SEED = "seed"
    CONFIG = "config"
    VERSIONS = "versions"
    COMMAND = "command"


class MetricEvent:
    """The `event` of a metrics.jsonl record."""

    EPOCH = "epoch"
    TEACHER_LOADED = "teacher_loaded"
    TEACHER_INIT = "teacher_init"
    TEACHER_DONE = "teacher_done"
    PROMPT_START = "prompt_start"
    STUDENT_DONE = "student_done"


class Metric:
    """A metrics.jsonl record's own keys (an epoch record also holds train_* parts and *_acc figures; teacher_done
    and student_done records hold TeacherFigures / PrefixRow keys)."""

    EVENT = "event"
    TIME = "time"
    STAGE = "stage"
    PHASE = "phase"
    STUDENT = "student"
    EPOCH = "epoch"
    EPOCHS = "epochs"
    SECONDS = "seconds"
    LR = "lr"
    SPEC = "spec"
    SOURCE = "source"
    TRAIN_PREFIX = "train_"  # train_<loss part>: a training loss part of the epoch
    ACC_SUFFIX = "_acc"  # <split>_acc: an accuracy


class Stage:
    """What a training process is fitting (status.json's and a metrics record's `stage`)."""

    TEACHER = "teacher"
    STUDENT = "student"


class TeacherRef:
    """teacher-ref.json's keys: the shared teacher file's path relative to the run, absolute, and its sha256."""

    PATH = "path"
    ABSOLUTE = "absolute"
    SHA256 = "sha256"


class SavedModel:
    """A saved teacher or student file (teacher.pt, students/student_KK.pt): a state_dict and the spec it was built
    from (its arch, params and kind), and for a student its prev_scale."""

    STATE_DICT = "state_dict"
    SPEC = "spec"
    PREV_SCALE = "prev_scale"
    ARCH = "arch"
    PARAMS = "params"
    KIND = "kind"


class TeacherLogits:
    """teacher_logits.pt's keys: the logits per split and the key they were made with (teacher weights digest,
    device, precision, and per split its fingerprint and its number of samples `n`)."""

    KEY = "key"
    LOGITS = "logits"
    SPLITS = "splits"
    N = "n"


class RunInfo:
    """The keys of Run.info(): one row of a run list."""

    NAME = "name"
    PATH = "path"
    STATE = "state"
    STAGE = "stage"
    DATASET = "dataset"
    MODE = "mode"
    K_PLANNED = "k_planned"
    K_DONE = "k_done"
    TEACHER_ACC = "teacher_acc"
    FINAL_ACC = "final_acc"
    FINAL_SHARE = "final_share"
    CREATED = "created"
    PROBLEM = "problem"  # what is wrong with the run's files, in one line ("" when nothing)


PREFIX_COLUMNS = (
    PrefixRow.K, PrefixRow.ARCH, PrefixRow.PARAMS, PrefixRow.STUDENT_FLOPS, PrefixRow.CUMULATIVE_FLOPS,
    PrefixRow.SHARE_OF_TEACHER, PrefixRow.PREFIX_ACC, PrefixRow.SOLO_ACC, PrefixRow.PREFIX_VAL_ACC,
    PrefixRow.SOLO_VAL_ACC, PrefixRow.PREV_SCALE, PrefixRow.TRUE_PROB_DROP, PrefixRow.RIGHT_TO_WRONG,
)

# ----------------------------------------------------------------------------------------------- checked fields
# A rule is (kind, low, high): "int" a whole number, "number" a finite real, both within low..high; "text" a
# string of low..high characters. Booleans are never numbers. A missing field passes; a null one only where the file
# may hold nulls (status.json, the manifest), and an empty prefix.csv cell reads as None.

TIME_RULE = ("number", 0, MAX_TIMESTAMP)
ACCURACY_RULE = ("number", 0, 1)
COUNT_RULE = ("int", 0, MAX_COUNT)
NAME_RULE = ("text", 0, 256)
FLOPS_RULE = ("number", 0, MAX_COUNT)
STATUS_RULES = {
    Status.STATE: ("text", 1, 32), Status.PID: ("int", 1, 2**31 - 1), Status.PID_START: ("int", 0, 2**63),
    Status.STAGE: NAME_RULE, Status.STUDENT: ("int", 0, MAX_STUDENTS), Status.EPOCH: ("int", 0, 10**6),
    Status.EPOCHS: ("int", 0, 10**6), Status.PROGRESS: ("number", 0, 1), Status.LOSS: ("number", -1e30, 1e30),
    Status.MESSAGE: ("text", 0, 20_000), Status.STARTED: TIME_RULE, Status.UPDATED: TIME_RULE,
    Status.HEARTBEAT: TIME_RULE, Status.SCAN_BACKEND: NAME_RULE, Status.DEVICE: NAME_RULE,
}
PREFIX_RULES = {
    PrefixRow.K: ("int", 1, MAX_STUDENTS), PrefixRow.ARCH: NAME_RULE, PrefixRow.PARAMS: COUNT_RULE,
    PrefixRow.STUDENT_FLOPS: FLOPS_RULE, PrefixRow.CUMULATIVE_FLOPS: FLOPS_RULE,
    PrefixRow.SHARE_OF_TEACHER: ("number", 0, 1e9), PrefixRow.PREFIX_ACC: ACCURACY_RULE,
    PrefixRow.SOLO_ACC: ACCURACY_RULE, PrefixRow.PREFIX_VAL_ACC: ACCURACY_RULE, PrefixRow.SOLO_VAL_ACC: ACCURACY_RULE,
    PrefixRow.PREV_SCALE: ("number", -MAX_PREV_SCALE, MAX_PREV_SCALE),
    PrefixRow.TRUE_PROB_DROP: ACCURACY_RULE, PrefixRow.RIGHT_TO_WRONG: ACCURACY_RULE,
}
# columns every reader of a row indexes
PREFIX_REQUIRED = (PrefixRow.K, PrefixRow.STUDENT_FLOPS, PrefixRow.CUMULATIVE_FLOPS, PrefixRow.PREFIX_ACC)
PREFIX_FILLED = (PrefixRow.K, PrefixRow.PREFIX_ACC)  # cells that may never be empty
TEACHER_RULES = {TeacherFigures.ARCH: NAME_RULE, TeacherFigures.FLOPS: FLOPS_RULE,
                 TeacherFigures.PARAMS: COUNT_RULE, TeacherFigures.TEST_ACC: ACCURACY_RULE,
                 TeacherFigures.VAL_ACC: ACCURACY_RULE}
DRAWN_RULES = {DrawnFigures.PER_DIGIT: ("int", 1, 10**6), DrawnFigures.SEED: ("int", -2**63, 2**64),
               DrawnFigures.N: ("int", 1, 10**7), DrawnFigures.TEACHER_ACC: ACCURACY_RULE}
PHOTO_RULES = {PhotoFigures.PER_CLASS: ("int", 1, 10**6), PhotoFigures.SEED: ("int", -2**63, 2**64),
               PhotoFigures.N: ("int", 1, 10**7), PhotoFigures.TEACHER_ACC: ACCURACY_RULE}
VIDEO_RULES = {VideoFigures.SPLIT: NAME_RULE, VideoFigures.N: ("int", 1, 10**7),
               VideoFigures.TEACHER_REVERSAL_CHANGE: ACCURACY_RULE, VideoFigures.TEACHER_DIGIT_ACC: ACCURACY_RULE}
VIDEO_LISTS = (VideoFigures.PREFIX_REVERSAL_CHANGE, VideoFigures.PREFIX_DIGIT_ACC)  # one share per prefix k = 1..K
# a combiner's lists of shares (one per prefix k, or per step k -> k+1); its BUDGETED items follow VAL_FITTED_RULES
COMBINER_LISTS = (CombinerFigures.PREFIX_ACC, CombinerFigures.PREFIX_VAL_ACC, CombinerFigures.TRUE_PROB_DROP,
                  CombinerFigures.RIGHT_TO_WRONG)
ANYTIME_RULES = {AnytimePoint.CONFIDENCE: ACCURACY_RULE, AnytimePoint.ACC: ACCURACY_RULE,
                 AnytimePoint.MEAN_FLOPS: FLOPS_RULE}
TEACHER_TEST_RULES = {TeacherTest.K: ("int", 1, MAX_STUDENTS), TeacherTest.N: COUNT_RULE,
                      TeacherTest.PREFIX_ONLY: COUNT_RULE, TeacherTest.TEACHER_ONLY: COUNT_RULE,
                      TeacherTest.DIFF: ("number", -1, 1), TeacherTest.P_VALUE: ACCURACY_RULE,
                      TeacherTest.VERDICT: ("text", 1, 16)}
VAL_FITTED_RULES = {ValFittedPoint.BUDGET: FLOPS_RULE, ValFittedPoint.CONFIDENCE: ACCURACY_RULE,
                    ValFittedPoint.VAL_ACC: ACCURACY_RULE, ValFittedPoint.VAL_MEAN_FLOPS: FLOPS_RULE,
                    ValFittedPoint.ACC: ACCURACY_RULE, ValFittedPoint.MEAN_FLOPS: FLOPS_RULE}
# what `pkd eval` and the app index in each point; confidence null: no early exit at that budget
VAL_FITTED_REQUIRED = (ValFittedPoint.BUDGET, ValFittedPoint.CONFIDENCE, ValFittedPoint.ACC,
                       ValFittedPoint.MEAN_FLOPS)
VAL_FITTED_NULLABLE = (ValFittedPoint.CONFIDENCE,)
AUC_RULES = {AnytimeAuc.VAL: ACCURACY_RULE, AnytimeAuc.TEST: ACCURACY_RULE, AnytimeAuc.LOW_FLOPS: FLOPS_RULE,
             AnytimeAuc.HIGH_FLOPS: FLOPS_RULE}
AUC_REQUIRED = (AnytimeAuc.VAL, AnytimeAuc.TEST)
AUC_NULLABLE = (AnytimeAuc.VAL, AnytimeAuc.TEST)  # null: no teacher FLOPs or no accuracies to average
SUMMARY_RULES = {Summary.NAME: NAME_RULE, Summary.DATASET: NAME_RULE, Summary.MODE: NAME_RULE,
                 Summary.FLOPS_UNIT: NAME_RULE, Summary.K_PLANNED: ("int", 0, MAX_STUDENTS)}
MANIFEST_RULES = {Manifest.CREATED: TIME_RULE, Manifest.NAME: NAME_RULE, Manifest.FORMAT: ("int", 0, 1000),
                  Manifest.SEED: ("int", -2**63, 2**64)}
CONFIG_SECTIONS = ("data", "teacher", "students", "distill")  # the config's mappings
CONFIG_TEXTS = (("name",), ("device",), ("data", "dataset"), ("teacher", "arch"), ("students", "arch"),
                ("distill", "mode"))
METRIC_RULES = {**PREFIX_RULES, **TEACHER_RULES, Metric.EVENT: ("text", 1, 64), Metric.TIME: TIME_RULE,
                Metric.STAGE: NAME_RULE, Metric.STUDENT: ("int", 0, MAX_STUDENTS), Metric.EPOCH: ("int", 0, 10**6),
                Metric.EPOCHS: ("int", 0, 10**6), Metric.SECONDS: ("number", 0, 1e9), Metric.LR: ("number", 0, 1e6)}
TEACHER_REF_RULES = {TeacherRef.PATH: ("text", 1, 4096), TeacherRef.ABSOLUTE: ("text", 1, 4096),
                     TeacherRef.SHA256: ("text", 64, 64)}
