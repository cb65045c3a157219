#!/usr/bin/env bash
# The fast path's GPU measurements (issue "Make the GPU step compute-bound"), for a machine with one CUDA GPU.
# Run from a checkout with dept-vl installed (pip install -e .); writes its reports into ${OUT:-gpu_fast_path}/.
# Every command is offline: the t5-base-shaped backbone is built from its config with random weights.
set -euo pipefail
out=${OUT:-gpu_fast_path}
mkdir -p "$out"
common=(--backbone t5-base-shape --device cuda --dtype bfloat16 --methods pt,dept --visual-tokens 49
        --text-length 20 --answer-length 4 --output-dir "$out/work")

# 1. eager (today's figure) against compiled, batch 64 and 256: step, generation, fraction of the bf16 peak,
#    paired dept / pt, compile seconds, graphs and graph breaks.
for batch in 64 256; do
  dept-vl bench "${common[@]}" --batch-size $batch --json "$out/eager_b$batch.json"
  dept-vl bench "${common[@]}" --batch-size $batch --compile --json "$out/compiled_b$batch.json"
  dept-vl bench "${common[@]}" --batch-size $batch --compile --compile-mode reduce-overhead \
    --json "$out/compiled_cudagraphs_b$batch.json"
done

# 2. the training loop against the bench at the same shapes (cached EfficientNet-Lite0 features: 49 tokens of
#    1280 at 224 px; easy-vqa questions: about 12 text tokens), t5-base-shaped random backbone, bf16, batch 64.
dept-vl train --task easyvqa --output-dir "$out/loop" --overwrite --max-steps 400 --batch-size 64 \
  --mixed-precision bf16 --test-examples 512 --log-every 50 \
  --set model.text.random.d_model=768 --set model.text.random.d_ff=3072 \
  --set model.text.random.num_layers=12 --set model.text.random.num_heads=12 \
  --set model.vision.image_size=224 --set model.vision.pool_tokens=null \
  --set model.dept.prompt_length=60 --set model.dept.r=30 --set model.dept.max_length=256 \
  > "$out/loop.json" 2> "$out/loop.log"
dept-vl bench --backbone t5-base-shape --device cuda --dtype bfloat16 --methods dept --batch-size 64 \
  --visual-tokens 49 --text-length 12 --feature-dim 1280 --answer-length 4 --compile --paired 0 \
  --output-dir "$out/work" --json "$out/loopshape_b64.json"
echo "reports in $out/; the loop's step rate: the it_s= of $out/loop.log after the first log point"
