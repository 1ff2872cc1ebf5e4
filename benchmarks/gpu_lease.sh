#!/usr/bin/env bash
# Everything the GPU rows of docs/benchmarks.md need, in one command on a machine with a CUDA GPU:
#   OUT=results_dir bash benchmarks/gpu_lease.sh [steps]
# steps (default all, in this order): check speed tests compile scale quality
#   check: benchmarks/gpu_check.py (every task and preset; CUDA against the CPU; out of memory)
#   speed: benchmarks/run.py on the paper's 512² RGB denoising, the plain FP32 loop against the engine's variants
#   compile: the same with torch.compile (its own step: compiling takes minutes)
#   tests: the engine tests on the GPU (NAPARI_DIP_TEST_DEVICE=cuda; GUI tests need napari and are left out)
#   scale: benchmarks/scale.py at full size on the GPU (classical references left to a CPU machine)
#   quality: the paper's 3000 iterations, plain loop against the engine, with PSNR
# Each step has its own time limit, so that one that hangs leaves the others their time.
set -u
OUT=${OUT:-gpu_results}
mkdir -p "$OUT"
STEPS=${1:-check,speed,tests,compile,scale,quality}
SPEED_VARIANTS=${SPEED_VARIANTS:-baseline,engine,engine:channels_last=false,engine:amp=false}
COMPILE_VARIANTS=${COMPILE_VARIANTS:-baseline,engine:compile=true,engine:compile=reduce-overhead}
QUALITY_VARIANTS=${QUALITY_VARIANTS:-baseline,engine}
SCALE_CASES=${SCALE_CASES:-a,e}
export PYTHONUNBUFFERED=1
step() { [[ ",$STEPS," == *",$1,"* ]]; }
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm --format=csv
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'cudnn', torch.backends.cudnn.version())"
if step check; then
  timeout 150 python3 benchmarks/gpu_check.py --json "$OUT/gpu_check.json"
fi
if step speed; then
  timeout 150 python3 benchmarks/run.py --device cuda --cases 2d-512 --variants "$SPEED_VARIANTS" --json "$OUT/speed.json"
fi
if step tests; then
  NAPARI_DIP_TEST_DEVICE=cuda timeout 180 python3 -m pytest -q -m "not gui" -n 8 -p no:cacheprovider \
    --continue-on-collection-errors -W ignore tests > "$OUT/tests_cuda.txt" 2>&1
  tail -n 60 "$OUT/tests_cuda.txt"
fi
if step compile; then
  timeout 300 python3 benchmarks/run.py --device cuda --cases 2d-512 --variants "$COMPILE_VARIANTS" \
    --json "$OUT/compile.json"
fi
if step scale; then
  timeout 300 python3 benchmarks/scale.py --shrink 1 --device cuda --cases "$SCALE_CASES" --skip-reference \
    --json "$OUT/scale_gpu.json"
fi
if step quality; then
  timeout 300 python3 benchmarks/run.py --device cuda --cases 2d-512 --variants "$QUALITY_VARIANTS" --psnr \
    --iterations 2980 --warmup 20 --json "$OUT/quality.json"
fi
