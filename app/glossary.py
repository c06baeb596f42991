"""Every word of jargon the app shows, explained in plain words once (pure data; no Streamlit).

The controls' help= tooltips and the table column tooltips take their text from TERMS, and the How-it-works page
lists them all, so a word is explained the same way wherever it appears.
"""

from __future__ import annotations

TERMS: dict[str, str] = {
    "FLOP": "One floating-point operation: one multiplication or one addition of two numbers. pkd counts the "
            "FLOPs one image needs to get an answer (a multiply-add counts as 2). Fewer FLOPs = less work, "
            "so a cheaper, faster, less power-hungry answer.",
    "teacher": "The big, accurate network (here a convolutional network, CNN) that is trained first. The "
               "students learn to copy its answers.",
    "student": "A small network (here a Mamba model that reads the image one row at a time) that learns from the "
               "teacher. Students are trained one after another, each a bit bigger.",
    "ensemble": "Several students used together: their answers are combined into one answer. Using more of them "
                "costs more FLOPs and is usually more accurate.",
    "logits": "The 10 raw scores a network gives, one per digit 0-9; the highest one wins. Softmax turns them into "
              "probabilities that add up to 100%.",
    "residual": "Residual mode: student k does not answer alone; it adds its scores (logits) to the running sum "
                "of the students before it, so it learns to correct what they still get wrong.",
    "independent": "Independent mode: every student learns alone and answers alone; the ensemble averages their "
                   "probabilities.",
    "scale s_k": "A number student k learns together with its weights: the running sum of the students before it "
                 "is multiplied by s_k before student k adds its own scores (E_k = s_k·E_(k-1) + z_k). "
                 "s_k = 1 is the plain sum.",
    "confidence": "The ensemble's probability for its answer, e.g. 97% sure it is a 7.",
    "early exit": "Stop asking more students as soon as the ensemble so far is sure enough (its confidence is "
                  "above a threshold). Easy digits stop after one student, hard ones use them all.",
    "epoch": "One pass over all the training images. More epochs = longer training, usually better learned.",
    "α (alpha)": "How much the student learns from the true labels versus from the teacher's answers: "
                 "α = 1 only the labels, α = 0 only the teacher.",
    "temperature T": "Softens the teacher's probabilities before the student copies them (T = 1 unchanged, "
                     "larger T = softer), so the student also learns which wrong digits the teacher found "
                     "similar (a 7 that looks a bit like a 1).",
    "width (d_model)": "How many numbers a student uses to describe each row of the image it reads: a wider "
                       "student is more accurate and costs more FLOPs.",
    "d_state": "The size of a Mamba student's memory while it reads the image row by row.",
    "loss": "The number training makes smaller: how far the students' answers are from the labels and from the "
            "teacher's answers.",
    "validation set": "10,000 images held back from training, used to choose settings (such as early-exit "
                      "thresholds) fairly.",
    "test set": "10,000 other images never used in training or for choosing settings: the accuracies shown are "
                "measured on them.",
    "kernel": "A small compiled C++ program that does the students' main loop (the selective scan) much faster "
              "on a CPU than plain Python. Built once, in about a minute.",
    "CUDA": "NVIDIA's way of running programs on a graphics card (GPU). Training uses it when this machine has "
            "an NVIDIA GPU; otherwise the CPU.",
    "device": "Where training runs: the CPU, or a GPU through CUDA ('auto' picks the GPU when there is one).",
    "Pareto front": "The runs that no other run beats by being both cheaper and at least as accurate.",
    "clip": "A short video: a few frames of one handwritten digit moving left, right, up or down, growing or "
            "shrinking (Moving MNIST). Its class names the digit and the motion, e.g. '3 moving left': 60 classes.",
    "frame": "One picture of a clip. Played in order the frames show the motion; played backwards, a digit "
             "moving left moves right and a growing one shrinks.",
    "time order": "Which frame comes first. The video teacher (after ViFi-CLIP) describes every frame on its own "
                  "and averages the descriptions; an average is the same in any order, so it cannot tell a clip "
                  "from the clip played backwards. The Mamba students read the frames one after another, so they "
                  "can.",
}

HELP: dict[str, str] = {  # control or column -> its tooltip
    "flops": TERMS["FLOP"],
    "epochs": TERMS["epoch"],
    "alpha": TERMS["α (alpha)"] + " The loss is α·(error on labels) + (1-α)·T²·(difference from the teacher).",
    "temperature": TERMS["temperature T"],
    "width": TERMS["width (d_model)"],
    "kernel": TERMS["kernel"],
    "device": TERMS["device"] + " " + TERMS["CUDA"],
    "mode": TERMS["residual"] + " " + TERMS["independent"],
    "scale": TERMS["scale s_k"] + " Residual mode only; off = B-DISTIL's plain sum.",
    "early exit": TERMS["early exit"],
    "students": "How many students answer together: student 1 alone, then students 1-2, and so on. Each one "
                "more adds its FLOPs.",
    "confidence": TERMS["confidence"],
    "clip": TERMS["clip"],
    "frame": TERMS["frame"] + " The students answer after every frame, from the frames so far.",
    "backwards": "Plays the clip's frames in reverse order. " + TERMS["time order"],
    "motion": "How your digit moves in the clip made from your drawing.",
}
