"""`RunOptions`: the run's options parsed once at an entry point, typed, and turned into a `Fitting`."""
import json

import pytest

from longrm_tasks.context.fitting import GENERATION_TOKENS, MARGIN, VERDICT_TOKENS, Fitting, Overlong, Protocol
from longrm_tasks.errors import InputError
from longrm_tasks.prompts.orders import OrderScheme
from longrm_tasks.requests.options import RunOptions, positive_int


def test_defaults_are_the_papers():
    run = RunOptions.parse()
    assert run == RunOptions()
    assert (run.protocol, run.order, run.overlong, run.parser) == (Protocol.PAPER, OrderScheme("paper"),
                                                                  Overlong.TRUNCATE, "reference")
    assert (run.gen_tokens, run.gen_tokens_given) == (GENERATION_TOKENS, False)


def test_values_come_back_typed_and_print_as_their_names():
    run = RunOptions.parse(protocol="fit", order="hash:7", overlong="skip", parser="strict", gen_tokens="512")
    assert run.protocol is Protocol.FIT and run.overlong is Overlong.SKIP and str(run.order) == "hash:7"
    assert (run.gen_tokens, run.gen_tokens_given) == (512, True)
    # results, docs and logs carry the plain names
    assert json.dumps({"p": run.protocol, "o": run.overlong}) == '{"p": "fit", "o": "skip"}'
    assert f"{run.protocol}/{run.overlong}" == "fit/skip" and "%s" % run.protocol == "fit"


@pytest.mark.parametrize("values, field", [
    ({"protocol": "fits"}, "protocol"),
    ({"order": "random"}, "order"),
    ({"protocol": "fit", "overlong": "drop"}, "overlong"),
    ({"overlong": "skip"}, "overlong"),  # paper scores over-long items wrong: no over-long choice
    ({"overlong": "truncate"}, "overlong"),
    ({"parser": "lenient"}, "parser"),
    ({"gen_tokens": "0"}, "max_gen_toks"),
    ({"gen_tokens": True}, "max_gen_toks"),
])
def test_each_bad_value_names_the_option_as_the_caller_spells_it(values, field):
    with pytest.raises(InputError) as err:
        RunOptions.parse(**values)
    assert err.value.field == field
    with pytest.raises(InputError) as err:
        RunOptions.parse(**values, name=lambda option: "--" + option.replace("_", "-"))
    assert err.value.field == "--" + field.replace("_", "-")


def test_fitting_reserves_what_each_judge_needs():
    paper, fit = RunOptions(), RunOptions.parse(protocol="fit", overlong="skip", gen_tokens=300)
    assert paper.fitting("generative", 4096) == Fitting(Protocol.PAPER, 4096, 0, Overlong.TRUNCATE)
    assert fit.fitting("generative", 4096, strip_bos=True) == Fitting(Protocol.FIT, 4096, 300, Overlong.SKIP, True)
    assert fit.fitting("generative", 4096).prompt_tokens == 4096 - 300 - MARGIN
    assert paper.fitting("loglikelihood", 4096).reserve == fit.fitting("loglikelihood", None).reserve == VERDICT_TOKENS
    assert fit.fitting("reward", 4096).reserve == 0


def test_no_room_is_refused_once_where_not_one_prompt_token_fits():
    """One rule for lm-eval's loader and ``longrm render``: a ``fit`` context that holds no prompt token beside
    the reserved ones (generation budget + MARGIN) is one error naming the option, not every item skipped."""
    fit = RunOptions.parse(protocol="fit", gen_tokens=100)
    edge = 100 + MARGIN
    with pytest.raises(InputError, match=rf"--max-length {edge} leaves no room .* 100 reserved") as err:
        fit.fitting("generative", edge).refuse_no_room("--max-length")
    assert err.value.field == "--max-length"
    assert fit.fitting("generative", edge + 1).prompt_tokens == 1
    fit.fitting("generative", edge + 1).refuse_no_room("--max-length")  # one token of room: items decide
    fit.fitting("generative", None).refuse_no_room("--max-length")  # unknown context: nothing to check
    RunOptions().fitting("generative", 1).refuse_no_room("max_length")  # paper: over-long is scored, not refused


def test_positive_int_takes_digits_and_integers_only():
    assert positive_int("12", "n") == 12 and positive_int(3, "n") == 3 and positive_int("", "n") is None
    for bad in ("1.5", 1.5, -2, "x", [1]):
        with pytest.raises(InputError):
            positive_int(bad, "n")


def test_a_fitting_given_names_holds_the_types():
    fitting = Fitting(protocol="fit", overlong="skip")
    assert fitting.protocol is Protocol.FIT and fitting.overlong is Overlong.SKIP
    assert Fitting(protocol="paper") == Fitting()
    with pytest.raises(ValueError):
        Fitting(protocol="fits")
