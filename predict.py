"""Cog runner for digitcloud's resnet34 (wire contract v1, see the README).

Inputs: ``image`` (one picture of a digit, any format or size) or ``digits`` (a .npy/.npz batch of
already-normalised uint8 [N, 28, 28]); ``request_id`` is echoed back. Output: one entry per digit,
in order, ``{digit, confidence, probabilities}`` or ``{error}``, plus the weights' sha256.
"""

import asyncio
from typing import Optional

import cog
from cog import BaseModel, BaseRunner, Input, Path

from digitcloud import digits_file, inputs, model


class Output(BaseModel):
    predictions: list[dict]
    weights_sha256: str
    request_id: Optional[str]


class Runner(BaseRunner):
    def setup(self) -> None:
        self.net = model.load_for_serving()  # sha256-checked; CUDA + warm-up when there is a GPU
        self.batch_size = model.serving_batch_size(self.net)
        self.model_lock = asyncio.Lock()  # requests queue here instead of being refused with 409

    @cog.concurrent(max=8)
    async def run(
        self,
        # Optional[...] is what makes them optional: Cog reads `X = Input(default=None)` as "required".
        image: Optional[Path] = Input(default=None, description="One image of a handwritten digit (PNG, JPEG, WebP…)"),
        digits: Optional[Path] = Input(default=None, description="A .npy/.npz batch: uint8 [N, 28, 28], MNIST-style"),
        request_id: Optional[str] = Input(default=None, description="Any string; echoed back in the output"),
    ) -> Output:
        try:
            if digits is not None and image is None:
                batch = await asyncio.to_thread(digits_file.read_digits_file, digits)
            elif image is not None and digits is None:
                batch = await asyncio.to_thread(inputs.decode_file, image)
            else:
                raise ValueError("give exactly one of 'image' (one picture) or 'digits' (a .npy/.npz batch file)")
        except inputs.InputError as exc:
            if digits is not None:
                raise  # the whole batch file is unusable: the prediction fails with the reason
            return self.output([{"error": f"image: {exc.reason}"}], request_id)
        batch = batch if digits is not None else batch[None]
        async with self.model_lock:
            probabilities = await asyncio.to_thread(model.predict_probabilities, self.net, batch, self.batch_size)
        # off the event loop: 250,000 entries take 0.5-0.7 s on a 2-core CPU, which would stall the other requests
        entries = await asyncio.to_thread(model.prediction_entries, probabilities)
        return self.output(entries, request_id)

    def output(self, entries: list[dict], request_id: Optional[str]) -> Output:
        return Output(predictions=entries, weights_sha256=model.WEIGHTS.sha256, request_id=request_id)
