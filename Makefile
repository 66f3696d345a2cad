# qdbev developer entry points.
#
#   make setup      create/update the venv (idempotent; seconds when nothing changed)
#   make test       run the whole pytest suite in the venv (tools/run_tests.sh: the parallel part on
#                   2 pytest-xdist workers, then the realtime ROS tests alone)
#   make demo       run tools/demo.sh in the venv's environment
#   make clean      remove build artefacts (build/, install/, log/, caches); keeps the venv
#   make distclean  clean + remove the venv
#
# Variables: VENV (default .venv), PYTHON (default python3.11, else python3; with a sourced ROS 2
# install the python3 that imports rclpy), ROS_DOMAIN_ID (default 42).

VENV ?= .venv
PYTHON ?=
VENV_PY := $(VENV)/bin/python
PYTEST_ARGS ?= -q -p no:cacheprovider --timeout=600

# DDS traffic stays on this machine's loopback (no multicast on the network interface).
export ROS_AUTOMATIC_DISCOVERY_RANGE := LOCALHOST
ROS_DOMAIN_ID ?= 42
export ROS_DOMAIN_ID
# Fast DDS profile with a 128 MiB shared-memory segment (camera-sized messages) + UDPv4.
FASTDDS_DEFAULT_PROFILES_FILE ?= $(CURDIR)/config/fastdds_shm.xml
export FASTDDS_DEFAULT_PROFILES_FILE

.PHONY: setup test demo clean distclean

setup:
	@PYTHON="$(PYTHON)" bash tools/setup_env.sh "$(VENV)"

test: setup
	bash tools/run_tests.sh $(VENV_PY) $(PYTEST_ARGS)

demo: setup
	PATH="$(abspath $(VENV))/bin:$$PATH" VIRTUAL_ENV="$(abspath $(VENV))" bash tools/demo.sh

clean:
	rm -rf build install log .pytest_cache *.egg-info
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)

# ---------------------------------------------------------------------------------------------
# Long jobs (not part of `make test`; each resumes when rerun). Model history: docs/MODELS.md.
#   make eval MODEL=M [BACKEND=torch|onnxruntime] [EVAL_DATA=dir]   official metrics of a model
#                      (default: the bundled default through onnxruntime int8 on NANO_VAL_DATA)
#   make nano-w4a6-eval  the default nano-w4a6-qdbev through onnxruntime int8 on both val splits
#   make nano-data     training (seed 1) + val (seed 2) SynthScenes; nano-score-data: the larger
#                      held-out split (seed 5) the paper table scores on
#   The teacher nano-fp32-yaw from scratch, each step warm-starting from the previous run:
#   nano-train -> nano-vel-train -> nano-xl-train -> nano-enc2-train -> nano-yaw-train (~9 h on 2 cores)
#   nano-aug-train     nano-fp32-yaw fine-tuned on domain-randomised scenes with image augmentation
#   nano-aug2-train    the same with photometric + GridMask only, lr 1e-4, 1500 steps
#   nano-twin-train    the aug2 recipe on the seed-4 scenes restyled, plus twin-render distillation
#   nano-style-train   the seed-4 scenes restyled, no image augmentation (ablation)
#   make paper-table   the QD-BEV table (several seeds) and the default model's run
NANO_TRAIN_DATA ?= data/synth-train
NANO_VAL_DATA ?= data/synth-val
NANO_SCORE_DATA ?= data/synth-val-s5
NANO_FRESH_DATA ?= data/synth-val-s9173
NANO_XL_DATA ?= data/synth-train-xl
NANO_S4_DATA ?= data/synth-train-s4
NANO_MIX_DATA ?= data/synth-train-mix6
NANO_STAGE1 ?= runs/nano-fp32-stage1
NANO_RUN ?= runs/nano-fp32-v2
NANO_VEL_RUN ?= runs/nano-fp32-vel
NANO_XL_RUN ?= runs/nano-fp32-xl
NANO_ENC2_RUN ?= runs/nano-fp32-enc2
NANO_YAW_A_RUN ?= runs/nano-fp32-yaw-a
NANO_YAW_RUN ?= runs/nano-fp32-yaw
NANO_AUG_RUN ?= runs/nano-fp32-aug
NANO_AUG_STEPS ?= 3000
NANO_STAGE1_STEPS ?= 5000
NANO_STEPS ?= 6500
DDP2 = OMP_WAIT_POLICY=PASSIVE OMP_NUM_THREADS=1 $(VENV)/bin/python -m torch.distributed.run --nproc_per_node=2 \
  --rdzv-backend=c10d --rdzv-endpoint=127.0.0.1:0 -m qdbev_core
# fine-tuning settings shared by the chain after nano-train (2 DDP processes x batch 1)
NANO_FINETUNE = $(DDP2) train --config nano --model-set 'code_weights=[1,1,1,1,1,1,1,1,1,1]' --split synth_train \
  --val-dataroot $(NANO_VAL_DATA) --val-split synth_val --batch-size 1 --lr 3e-4 --warmup-steps 100 \
  --ckpt-every 250 --log-every 10 --threads 1 --workers 0
NANO_YAW = $(NANO_FINETUNE) --model-set enc_layers=2 --model-set yaw_loss=axis_direction

.PHONY: eval nano-w4a6-eval nano-data nano-val-data nano-score-data nano-fresh-data nano-xl-data nano-s4-data \
  nano-train nano-vel-train nano-xl-train nano-enc2-train nano-yaw-train nano-mix-data nano-aug-train nano-aug2-train \
  nano-s4-mix-data nano-twin-train nano-style-train nano-photo-train nano-photo-mild-train

MODEL ?= nano-w4a6-qdbev
BACKEND ?= onnxruntime
EVAL_DATA ?= $(NANO_VAL_DATA)
EVAL_OUT ?= out/eval/$(notdir $(MODEL))-$(BACKEND)-$(notdir $(EVAL_DATA))
eval: nano-val-data nano-score-data
	$(VENV)/bin/qdbev predict --model $(MODEL) --backend $(BACKEND) --dataroot $(EVAL_DATA) --split synth_val \
	  --out $(EVAL_OUT)/results.json --eval-dir $(EVAL_OUT)

nano-w4a6-eval: nano-val-data nano-score-data nano-fresh-data
	$(MAKE) --no-print-directory eval MODEL=nano-w4a6-qdbev BACKEND=onnxruntime EVAL_DATA=$(NANO_VAL_DATA)
	$(MAKE) --no-print-directory eval MODEL=nano-w4a6-qdbev BACKEND=onnxruntime EVAL_DATA=$(NANO_SCORE_DATA)
	$(MAKE) --no-print-directory eval MODEL=nano-w4a6-qdbev BACKEND=onnxruntime EVAL_DATA=$(NANO_FRESH_DATA)

nano-data: nano-val-data
	test -f $(NANO_TRAIN_DATA)/v1.0-mini/splits.json || $(VENV)/bin/qdbev synth --out $(NANO_TRAIN_DATA) \
	  --scenes 60 --samples 40 --image-scale 0.22 --seed 1 --val-fraction 0.05 --workers 2

nano-val-data: setup
	test -f $(NANO_VAL_DATA)/v1.0-mini/splits.json || $(VENV)/bin/qdbev synth --out $(NANO_VAL_DATA) \
	  --scenes 10 --samples 40 --image-scale 0.22 --seed 2 --val-fraction 0.5

# 10 val scenes x 40 (one training scene is generated and unused)
nano-score-data: setup
	test -f $(NANO_SCORE_DATA)/v1.0-mini/splits.json || $(VENV)/bin/qdbev synth --out $(NANO_SCORE_DATA) \
	  --scenes 11 --samples 40 --image-scale 0.22 --seed 5 --val-fraction 0.91 --workers 2

# the split the QD-BEV issue was filed on (seed 9173, 5 val scenes x 40; no training set uses it)
nano-fresh-data: setup
	test -f $(NANO_FRESH_DATA)/v1.0-mini/splits.json || $(VENV)/bin/qdbev synth --out $(NANO_FRESH_DATA) \
	  --scenes 10 --samples 40 --image-scale 0.22 --seed 9173 --val-fraction 0.5 --workers 2

nano-xl-data: setup
	test -f $(NANO_XL_DATA)/v1.0-mini/splits.json || $(VENV)/bin/qdbev synth --out $(NANO_XL_DATA) \
	  --scenes 160 --samples 40 --image-scale 0.22 --seed 3 --val-fraction 0.02 --workers 2

nano-s4-data: setup
	test -f $(NANO_S4_DATA)/v1.0-mini/splits.json || $(VENV)/bin/qdbev synth --out $(NANO_S4_DATA) \
	  --scenes 160 --samples 40 --image-scale 0.22 --seed 4 --val-fraction 0.02 --workers 2

# stage 1 at 128x352 input / 32x32 BEV from scratch, stage 2 = the nano config warm-started from it
nano-train: nano-data
	OMP_WAIT_POLICY=PASSIVE $(VENV)/bin/qdbev train --config nano --model-set 'image_size=[128,352]' \
	  --model-set bev_h=32 --model-set bev_w=32 --dataroot $(NANO_TRAIN_DATA) --split synth_train \
	  --val-dataroot $(NANO_VAL_DATA) --val-split synth_val --out $(NANO_STAGE1) --steps $(NANO_STAGE1_STEPS) \
	  --batch-size 2 --lr 1e-3 --warmup-steps 300 --eval-every 2000 --ckpt-every 250 --log-every 10 --threads 2 --workers 1
	$(DDP2) train --config nano --init-from $(NANO_STAGE1)/model.safetensors --dataroot $(NANO_TRAIN_DATA) \
	  --split synth_train --val-dataroot $(NANO_VAL_DATA) --val-split synth_val --out $(NANO_RUN) --steps $(NANO_STEPS) \
	  --batch-size 1 --lr 6e-4 --warmup-steps 200 --eval-every 2500 --ckpt-every 250 --log-every 10 --threads 1 --workers 0

nano-vel-train: nano-data
	$(NANO_FINETUNE) --init-from $(NANO_RUN)/model.safetensors --dataroot $(NANO_TRAIN_DATA) --out $(NANO_VEL_RUN) \
	  --steps 4000 --eval-every 2000

nano-xl-train: nano-val-data nano-xl-data
	$(NANO_FINETUNE) --init-from $(NANO_VEL_RUN)/model.safetensors --dataroot $(NANO_XL_DATA) --out $(NANO_XL_RUN) \
	  --steps 4000 --eval-every 2000

nano-enc2-train: nano-val-data nano-xl-data
	$(NANO_FINETUNE) --init-from $(NANO_XL_RUN)/model.safetensors --model-set enc_layers=2 --dataroot $(NANO_XL_DATA) \
	  --out $(NANO_ENC2_RUN) --steps 5000 --eval-every 5000

# (a) on the seed-3 scenes, a 4000-step schedule stopped at step 2000; (b) 5000 steps on the seed-4 scenes
nano-yaw-train: nano-val-data nano-xl-data nano-s4-data
	$(NANO_YAW) --init-from $(NANO_ENC2_RUN)/model.safetensors --dataroot $(NANO_XL_DATA) --out $(NANO_YAW_A_RUN) \
	  --steps 4000 --stop-at 2000 --eval-every 2000
	$(NANO_YAW) --init-from $(NANO_YAW_A_RUN)/model.safetensors --dataroot $(NANO_S4_DATA) --out $(NANO_YAW_RUN) \
	  --steps 5000 --eval-every 2500

# issue 21: appearance-robust fp32. 120 scenes in the random-mix style (60 % domain-randomised looks,
# 40 % the default look; seed 6, never used by any other set), then nano-fp32-yaw fine-tuned on them
# with every image augmentation (photometric, GridMask, resize/crop/flip with the intrinsics updated).
nano-mix-data: setup
	test -f $(NANO_MIX_DATA)/v1.0-mini/splits.json || $(VENV)/bin/qdbev synth --out $(NANO_MIX_DATA) \
	  --scenes 120 --samples 40 --image-scale 0.22 --seed 6 --val-fraction 0.02 --workers 2 --style random-mix

nano-aug-train: nano-val-data nano-mix-data
	$(NANO_YAW) --init-from nano-fp32-yaw --dataroot $(NANO_MIX_DATA) --out $(NANO_AUG_RUN) \
	  --steps $(NANO_AUG_STEPS) --eval-every 1500 --image-aug all

# second recipe (after nano-aug-train lost 0.07 NDS on the default look): no geometric image
# augmentation (photometric + GridMask only), a third of the learning rate, half the steps
NANO_AUG2_RUN ?= runs/nano-fp32-aug2
nano-aug2-train: nano-val-data nano-mix-data
	$(NANO_YAW) --init-from nano-fp32-yaw --dataroot $(NANO_MIX_DATA) --out $(NANO_AUG2_RUN) \
	  --steps 1500 --eval-every 750 --image-aug photometric,gridmask --lr 1e-4

# third recipe: the aug2 recipe plus twin-render distillation on the teacher's own scenes: the
# seed-4 scenes of nano-s4-data restyled (random-mix), and nano-fp32-yaw, frozen, sees each sample
# in the default look (nano-s4-data itself) and its image-view and BEV features are distilled into
# the student (qdbev_core/train/twin_distill.py). NANO_TWIN_DATA / NANO_TWIN_OF pick other twins
# (e.g. NANO_TWIN_DATA=$(NANO_MIX_DATA) NANO_TWIN_OF=data/synth-train-mix6-twin, the first try).
NANO_S4_MIX_DATA ?= data/synth-train-s4-mix
NANO_TWIN_DATA ?= $(NANO_S4_MIX_DATA)
NANO_TWIN_OF ?= $(NANO_S4_DATA)
NANO_TWIN_RUN ?= runs/nano-fp32-twin
nano-s4-mix-data: setup
	test -f $(NANO_S4_MIX_DATA)/v1.0-mini/splits.json || $(VENV)/bin/qdbev synth --out $(NANO_S4_MIX_DATA) \
	  --scenes 160 --samples 40 --image-scale 0.22 --seed 4 --val-fraction 0.02 --workers 2 --style random-mix

nano-twin-train: nano-val-data nano-s4-data nano-s4-mix-data
	$(NANO_YAW) --init-from nano-fp32-yaw --dataroot $(NANO_TWIN_DATA) --out $(NANO_TWIN_RUN) \
	  --steps 1500 --eval-every 750 --image-aug photometric,gridmask --lr 1e-4 \
	  --twin-teacher nano-fp32-yaw --twin-dataroot $(NANO_TWIN_OF) --twin-weight 0.5

# fourth recipe (ablation): the same restyled seed-4 scenes with no image augmentation at all
# (BEV rotation/flip only): does the style variety of the data alone keep the default look?
NANO_STYLE_RUN ?= runs/nano-fp32-style
nano-style-train: nano-val-data nano-s4-mix-data
	$(NANO_YAW) --init-from nano-fp32-yaw --dataroot $(NANO_S4_MIX_DATA) --out $(NANO_STYLE_RUN) \
	  --steps 1500 --eval-every 750 --lr 1e-4

# fifth / sixth recipes (ablation): the style recipe plus photometric distortion without GridMask,
# at BEVFormer's strength (photometric) or half of it without the channel swap (photometric-mild)
NANO_PHOTO_RUN ?= runs/nano-fp32-photo
NANO_PHOTO_MILD_RUN ?= runs/nano-fp32-photo-mild
nano-photo-train: nano-val-data nano-s4-mix-data
	$(NANO_YAW) --init-from nano-fp32-yaw --dataroot $(NANO_S4_MIX_DATA) --out $(NANO_PHOTO_RUN) \
	  --steps 1500 --eval-every 750 --lr 1e-4 --image-aug photometric

nano-photo-mild-train: nano-val-data nano-s4-mix-data
	$(NANO_YAW) --init-from nano-fp32-yaw --dataroot $(NANO_S4_MIX_DATA) --out $(NANO_PHOTO_MILD_RUN) \
	  --steps 1500 --eval-every 750 --lr 1e-4 --image-aug photometric-mild

# ---------------------------------------------------------------------------------------------
# The paper's table on SynthScenes (long job: not part of `make test`; rerun to resume / reuse).
#   make paper-table   FP32 / standard / progressive / QD-BEV (standard and progressive) W4A6 / W8A8
#                      rows with the same budget, each trained once per seed in PAPER_SEEDS (w8a8: the
#                      first seed only), curves on NANO_VAL_DATA, final scores on the larger held-out
#                      NANO_SCORE_DATA (10 scenes x 40, seed 5, used by no training set), official devkit
#                      -> $(PAPER_OUT)/paper-table.json, docs/RESULTS.md, docs/paper-table.png
#                      (see qdbev_core/experiments/paper_table.py)
# Finished runs are archived in docs/paper-table-rows/ (kept in git), so the table (16 runs of ~1 h on 2
# cores) is completed over several sittings: each rerun trains only what is missing. A subset, e.g.
# `make paper-table PAPER_ROWS=qdbev PAPER_SEEDS=0`, trains and archives just that run.
# PAPER_STEPS x PAPER_BATCH (global) per row, PAPER_PROCS DDP processes (2 is ~1.5x faster on 2 cores).
PAPER_TEACHER ?= nano-fp32-yaw
# QAT on the teacher's own last-stage scenes (seed 4) at lr 1e-4: fine-tuning the teacher in fp32 on the
# seed-1 scenes at 2e-4 (the first table, docs/history/RESULTS-seed1-lr2e-4.md) lost 0.011 NDS by itself
PAPER_TRAIN_DATA ?= $(NANO_S4_DATA)
PAPER_LR ?= 1e-4
PAPER_STEPS ?= 1500
PAPER_BATCH ?= 2
PAPER_PROCS ?= 2
PAPER_SEEDS ?= 0,1,2
PAPER_OUT ?= runs/paper-table-s4
# training order within a seed (the table is always printed fp32, standard, progressive, qdbev,
# qdbev-progressive, w8a8); all rows get seed 0 before any row gets seed 1
PAPER_ROWS ?= qdbev,fp32,standard,progressive,qdbev-progressive,w8a8
# more `qdbev experiment paper-table` options
PAPER_ARGS ?= --eval-every 500

.PHONY: paper-table

paper-table: nano-val-data nano-s4-data nano-score-data
	OMP_WAIT_POLICY=PASSIVE $(VENV)/bin/qdbev experiment paper-table --teacher $(PAPER_TEACHER) \
	  --dataroot $(PAPER_TRAIN_DATA) --split synth_train --lr $(PAPER_LR) --val-dataroot $(NANO_VAL_DATA) --val-split synth_val \
	  --score-dataroot $(NANO_SCORE_DATA) --score-split synth_val \
	  --steps $(PAPER_STEPS) --batch-size $(PAPER_BATCH) --seeds $(PAPER_SEEDS) --out $(PAPER_OUT) \
	  --ddp-procs $(PAPER_PROCS) --rows $(PAPER_ROWS) $(PAPER_ARGS)

# issue 21: cross-style benchmark. The same val scenes (seed 101, never trained on) rendered in
# several SynthScenes appearance styles (qdbev synth --style; only the images differ), each scored
# with the official devkit; writes runs/cross-style/cross-style.{json,md,png}. CROSS_MODELS is a
# list of --model arguments (e.g. CROSS_MODELS="nano-fp32-yaw runs/x/model.safetensors").
CROSS_MODELS ?= nano-fp32-yaw
CROSS_STYLES ?= default,overcast,dusk,harsh,swapped,random
CROSS_SCENES ?= 2
CROSS_SAMPLES ?= 10
CROSS_DATA ?= data/cross-style-val
CROSS_OUT ?= runs/cross-style
.PHONY: cross-style
cross-style: setup
	OMP_WAIT_POLICY=PASSIVE $(VENV)/bin/qdbev experiment cross-style $(foreach m,$(CROSS_MODELS),--model $(m)) \
	  --styles $(CROSS_STYLES) --scenes $(CROSS_SCENES) --samples $(CROSS_SAMPLES) --image-scale 0.22 --seed 101 \
	  --data-dir $(CROSS_DATA) --out $(CROSS_OUT)
