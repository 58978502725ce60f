def execute_command(image) -> str:
    image_patch = ImagePatch(image)
    diamonds = image_patch.find("diamond")
    diamonds.sort(key=lambda d: d.horizontal_center)
    first = diamonds[0]
    big = max(diamonds, key=lambda d: d.width * d.height)
    by_colour = sorted(diamonds, key=lambda d: d.simple_query("What color is it?"))
    colours = [d.simple_query("What color is it?") for d in by_colour]
    left_half = image_patch.crop(0, 0, image_patch.width // 2, image_patch.height)
    on_left = len(left_half.find("diamond"))
    choice = first.best_text_match(["red", "blue"])
    red = first.verify_property("diamond", "red")
    there = image_patch.exists("cross")
    what = image_patch.find("cross")[0].simple_query()
    chosen = best_image_match(diamonds, ["diamond"], return_index=True)
    gap = distance(first, big)
    touch = first.overlaps_with(big.left, big.lower, big.right, big.upper)
    n = coerce_to_numeric(str(len(colours)) + " diamonds")
    box = [big.left, big.lower, big.right, big.upper, big.width, big.height, big.horizontal_center, big.vertical_center]
    try:
        none = image_patch.find("ring")[0]
    except IndexError as e:
        none = "IndexError"
    return f"{colours}|{on_left}|{choice}|{bool_to_yesno(red)}|{bool_to_yesno(there)}|{what}|{chosen}|{gap:.1f}|{touch}|{int(n)}|{box}|{none}"
