"""What the forkserver of a short-lived command imports before it forks any worker
(workers.start_forkserver): the decoders, and the resampling weights for every size a
picture's hashing can meet, worked out once for all the workers (resample.warm).

The daemon does not use it: its forkserver stays small, and its long-lived workers
soon hold the weights they need.
"""

from . import fingerprint, resample

resample.warm(fingerprint.BASE_SIDE, fingerprint.HASH_SIDE)
