"""Protocols: the files (:mod:`.spec`, :mod:`.schema`), the run plan (:mod:`.plan`), scheduling the
pretrainings (:mod:`.schedule`: ``--jobs`` workers and torchrun ranks; :mod:`.launch`: submitit jobs),
training one checkpoint (:mod:`.training`), the evaluations (:mod:`.evaluation`) and the runner that
composes them (:mod:`.runner`)."""
