"""The jobs: one request dataclass and one function per command (demo, simulate, predict on files and folders —
on one process or many —, evaluate, calibrate, bench, toy, export, the real-pair evaluation). The command line and
the widgets call them; they import the training and inference floors and below."""
