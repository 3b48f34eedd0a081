"""One batch agent for every batch scheduler, composed of seams that each do one thing.

- ``dialect``: what one scheduler says and means (Slurm, OpenPBS, Torque, Grid Engine): pure argv
  builders, script headers and parsers returning typed records;
- ``launchers``: how an attempt starts inside its allocation (the worker, a command, Apptainer, the CRIU
  wrapper), writing the attempt's inputs and job script through ``metasched.attempt_dir``;
- ``agent``: the I/O: submissions in flight, one status call per poll (on its own thread), outcome
  records first, cancel, re-attach, lost/vanished/unavailable handling, load and capacity;
- ``rounds``: one round of status commands (status, accounting, hold reasons, nodes) on the poller thread;
- ``explain``: what a job that ended without an outcome record means (pure);
- ``config``: the fields every batch site has; ``preflight``: checks every batch kind shares.
"""
