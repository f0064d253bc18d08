"""The training floor: the training loop (:mod:`.train`, which knows no task), checkpoints, several processes
(:mod:`.distributed`), where training pairs come from (:mod:`.training_data`) and the job that ties them to a model
file (:mod:`.job`) for the command line and the Fine-tune widget. It imports the inference floor and below."""
