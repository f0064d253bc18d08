"""The inference floor: model files and models (:mod:`.models`, :mod:`.model_files`), the one prediction path
(:mod:`.predict`: devices, chunks and tiles), the door every reconstruction goes through (:mod:`.reconstructor`),
the consistency check, the std calibration (:mod:`.uncertainty`), models at other optics (:mod:`.optics_match`),
the classical methods behind the same door, camera planes for qpi (:mod:`.brightfield_input`) and results as
layers (:mod:`.layers`). It imports tasks/, data/ and the core below it, never the training floor or the jobs."""
